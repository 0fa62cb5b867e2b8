"""Tests of the HA topology (``lab.cloud.Cloud(topology="ha")``): a private
Galera cluster, RabbitMQ cluster and HAProxy in front of API replicas."""
