"""The gratuitous ARP frame the netns driver sends from inside each namespace."""

import socket
import struct

import testtools

from clouddisco.drivers import netns_inside


class GarpFrameTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.frame = netns_inside.garp_frame("fa:16:3e:12:34:56", "10.250.0.5")

    def test_ethernet_header_is_broadcast_arp_from_the_gateway_mac(self):
        dst, src, ethertype = struct.unpack("!6s6sH", self.frame[:14])
        self.assertEqual(b"\xff" * 6, dst)
        self.assertEqual(bytes.fromhex("fa163e123456"), src)
        self.assertEqual(0x0806, ethertype)

    def test_arp_request_announces_its_own_address(self):
        htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", self.frame[14:22])
        self.assertEqual((1, 0x0800, 6, 4, 1), (htype, ptype, hlen, plen, oper))
        sha, spa, tha, tpa = struct.unpack("!6s4s6s4s", self.frame[22:42])
        self.assertEqual(bytes.fromhex("fa163e123456"), sha)
        # Sender and target address equal: that is what makes it gratuitous.
        self.assertEqual(socket.inet_aton("10.250.0.5"), spa)
        self.assertEqual(spa, tpa)
        self.assertEqual(b"\xff" * 6, tha)
        self.assertEqual(42, len(self.frame))
