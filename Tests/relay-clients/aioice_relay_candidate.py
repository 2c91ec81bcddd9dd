"""Gathers ICE candidates with aioice (a Python ICE/TURN stack from PyPI) through a TURN server and prints the
relay candidate. Usage: aioice_relay_candidate.py HOST PORT USERNAME PASSWORD [udp|tcp] (how aioice reaches the
TURN server; default udp). Exit 0 and one `relay ADDRESS PORT`
line when a relay candidate was gathered, 1 otherwise."""
import asyncio
import sys

import aioice


async def main(host: str, port: int, username: str, password: str, transport: str) -> int:
    connection = aioice.Connection(
        ice_controlling=True,
        components=1,
        turn_server=(host, port),
        turn_username=username,
        turn_password=password,
        turn_transport=transport,
        use_ipv6=False,
    )
    try:
        await asyncio.wait_for(connection.gather_candidates(), timeout=15)
        relay = [c for c in connection.local_candidates if c.type == "relay"]
        for candidate in relay:
            print(f"relay {candidate.host} {candidate.port}", flush=True)
        return 0 if relay else 1
    finally:
        await connection.close()


if __name__ == "__main__":
    host, port, username, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    transport = sys.argv[5] if len(sys.argv) > 5 else "udp"
    sys.exit(asyncio.run(main(host, port, username, password, transport)))
