#!/usr/bin/env python3
"""A sitelink.v1 upstream written from docs/PROTOCOL.md alone (no sitelink
code): mutual TLS, the sitelink.v1 subprotocol, hello/welcome, batches
stored by (agent, seq) and acknowledged, then a command, a message type the
agent cannot know and an update offer, each answered by a result.

Usage: from_the_doc.py PKI_DIR RECORDS. Prints "listening PORT", then one
JSON line with what it stored and the results, and exits.
"""
import asyncio
import json
import ssl
import sys
import time

try:
    from websockets.asyncio.server import serve
except ImportError:  # websockets before 13 (Debian 12 has 10.4)
    from websockets.server import serve

PKI, WANT = sys.argv[1], int(sys.argv[2])
stored = {}  # (agent, seq) -> record: repeats are ignored
acked = {}  # agent -> everything up to here is stored
results = {}
done = asyncio.Event()


def send(ws, message):
    return ws.send(json.dumps(message))


async def handler(ws):
    # The agent id is the client certificate's common name (section 1).
    cert = ws.transport.get_extra_info("peercert")
    agent = dict(field[0] for field in cert["subject"])["commonName"]
    hello = json.loads(await ws.recv())
    if hello.get("type") != "hello" or hello.get("agent") != agent:
        await send(ws, {"type": "error", "error": "hello does not match the certificate"})
        return
    await send(ws, {
        "type": "welcome",
        "version": 1,
        "upstream": "from_the_doc.py",
        "clock_ms": int(time.time() * 1000),
        "acked_seq": acked.get(agent, 0),
    })
    asked = False
    async for text in ws:
        m = json.loads(text)
        if m["type"] == "batch":
            for r in m["records"]:
                stored.setdefault((agent, r["seq"]), r)
            acked[agent] = max(acked.get(agent, 0), m["last"])
            await send(ws, {"type": "ack", "up_to": m["last"]})
            if len(stored) >= WANT and not asked:
                asked = True
                await send(ws, {"type": "command", "id": "py-1", "device": "g1",
                                "action": "ping", "args": []})
                await send(ws, {"type": "reboot", "id": "py-2", "when": "now"})
                # Signed by no key the agent trusts: refused before any download.
                await send(ws, {"type": "update", "id": "py-3",
                                "url": "https://updates.invalid/sitelink",
                                "manifest": {"version": "9.9.9", "arch": "arm64", "size": 1,
                                             "sha256": "00" * 32, "key_id": "00" * 8,
                                             "signature": "AA=="}})
        elif m["type"] == "result":
            results[m["id"]] = m
            if len(results) == 3:
                done.set()


async def main():
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(f"{PKI}/hub.pem", f"{PKI}/hub.key")
    tls.load_verify_locations(f"{PKI}/ca.pem")
    tls.verify_mode = ssl.CERT_REQUIRED
    async with serve(handler, "127.0.0.1", 0, ssl=tls, subprotocols=["sitelink.v1"],
                     max_size=16 * 1024 * 1024) as server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.wait_for(done.wait(), 25)
    print(json.dumps({
        "stored": len(stored),
        "results": {k: v["status"] for k, v in results.items()},
        "ping": results["py-1"]["detail"],
    }), flush=True)


asyncio.run(main())
