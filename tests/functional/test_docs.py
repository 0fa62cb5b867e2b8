"""The documentation builds, with warnings as errors (what `tox -e docs` runs).

The configuration, policy and CLI references are generated from the code by
Sphinx extensions, so a renamed option, a removed policy rule or a command
that no longer loads breaks this build rather than leaving stale docs.
"""

import os
import subprocess
import sys
import tempfile

import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DocsBuildTest(testtools.TestCase):

    def test_sphinx_build_has_no_warnings(self):
        with tempfile.TemporaryDirectory(prefix="clouddisco-docs-") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                 "-b", "html", "-d", os.path.join(out, "doctrees"),
                 "doc/source", os.path.join(out, "html")],
                cwd=REPO, capture_output=True, text=True, timeout=600)
            self.assertEqual(0, proc.returncode,
                             "sphinx-build -W failed:\n" + proc.stderr[-8000:])
            for page in ("index", "configuration", "policy", "cli", "api-ref",
                         "install", "admin"):
                self.assertTrue(os.path.exists(os.path.join(out, "html", page + ".html")),
                                page + ".html was not built")
