"""How much a channel may have in flight: from the round trip the kernel measured."""

from __future__ import annotations

import socket

from workers.transport import _FLIGHT_MIN, _FLIGHT_RATE, _allowance


class Kernel:
    """A socket whose TCP_INFO says `min_rtt_us` (byte 148) and `rtt_us` (byte 68)."""

    def __init__(self, min_rtt_us: int, rtt_us: int = 0, size: int = 232) -> None:
        info = bytearray(size)
        info[68:72] = rtt_us.to_bytes(4, "little")
        if size >= 152:
            info[148:152] = min_rtt_us.to_bytes(4, "little")
        self.info = bytes(info)

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        assert (level, option) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        return self.info[:size]


def test_loopback_or_a_lan_keeps_the_minimum() -> None:
    assert _allowance(Kernel(min_rtt_us=15, rtt_us=3000)) == _FLIGHT_MIN == 256 * 1024


def test_a_distant_host_gets_what_its_round_trip_needs() -> None:
    # 50 ms away: 256 MB/s needs 12.8 MB in flight, more than sshd's 2 MiB window.
    assert _allowance(Kernel(min_rtt_us=50_000)) == int(0.05 * _FLIGHT_RATE)


def test_an_older_kernel_gives_the_smoothed_round_trip() -> None:
    assert _allowance(Kernel(min_rtt_us=0, rtt_us=20_000, size=104)) == int(0.02 * _FLIGHT_RATE)


def test_without_tcp_info_the_minimum() -> None:
    assert _allowance(object()) == _FLIGHT_MIN
