#!/usr/bin/env bash
# Installs the Debian packages every test tier needs (run as root; Debian 12 or later):
#   build-essential, python3, cmake   the addon (node-gyp; cmake-js for the sanitizer build)
#   g++-aarch64-linux-gnu, qemu-user  `npm run prebuild`: the linux-arm64 prebuild and its load test
#   iproute2, iptables, nftables, procps, libnetfilter-queue-dev, iperf3
#                                     `npm run test:lab`: namespaces, NATs, sysctl, the delay program, a real program
#   socat, haproxy                    the benchmark's alternatives to a tunnel
#   redis-server                      the cluster tests (they start their own redis-server)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential python3 cmake ca-certificates \
  g++-aarch64-linux-gnu qemu-user \
  iproute2 iptables nftables procps libnetfilter-queue-dev iperf3 \
  socat haproxy \
  redis-server >/dev/null
