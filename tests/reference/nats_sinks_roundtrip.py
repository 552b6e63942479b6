"""Round trip with the reference implementation, nats-sinks 0.4.3.

Two halves, called by tests/e2e/reference_roundtrip.rs:

  publish        signs messages with nats-sinks' own HMAC helper and publishes
                 them to JetStream with nats-py, so sinkhost must verify a
                 signature made by the reference;
  verify-records decrypts the payload envelopes that sinkhost wrote into file
                 records with nats-sinks' own decryptor, so the reference must
                 read sinkhost's encryption.

Keys are test keys passed on the command line (base64).
"""

import argparse
import asyncio
import base64
import json
import pathlib
import sys

from nats_sinks.core.authenticity import hmac_sha256_signature_b64
from nats_sinks.core.config import EncryptionConfig
from nats_sinks.core.encryption import decrypt_payload
from nats_sinks.core.envelope import NatsEnvelope


def payload(i: int) -> bytes:
    return json.dumps({"n": i, "source": "nats-sinks"}, separators=(",", ":")).encode()


async def publish(args: argparse.Namespace) -> None:
    import nats

    key = base64.b64decode(args.key_b64)
    nc = await nats.connect(args.url)
    js = nc.jetstream()
    for i in range(args.count):
        data = payload(i)
        message_id = f"ref-{i}"
        envelope = NatsEnvelope(
            subject=args.subject,
            data=data,
            headers={"Nats-Msg-Id": message_id},
            stream=None,
            consumer=None,
            stream_sequence=None,
            consumer_sequence=None,
            timestamp=None,
            message_id=message_id,
            redelivered=None,
            pending=None,
        )
        signature = hmac_sha256_signature_b64(
            envelope, key=key, key_id=args.key_id, signed_fields=("subject", "message_id")
        )
        headers = {
            "Nats-Msg-Id": message_id,
            "Nats-Sinks-Authenticity-Algorithm": "hmac-sha256",
            "Nats-Sinks-Authenticity-Key-Id": args.key_id,
            "Nats-Sinks-Authenticity-Signature": signature,
        }
        if args.tamper_every and i % args.tamper_every == 0:
            data = data + b" "
        await js.publish(args.subject, data, headers=headers)
    await nc.close()
    print(f"published {args.count} messages signed by nats-sinks")


def verify_records(args: argparse.Namespace) -> None:
    config = EncryptionConfig(enabled=True, key_id=args.key_id, key_b64=args.key_b64)
    records = sorted(pathlib.Path(args.dir).rglob("*.json"))
    seen = set()
    for path in records:
        record = json.loads(path.read_text())
        envelope = record["payload"]
        if "_nats_sinks_encryption" not in envelope:
            sys.exit(f"{path}: payload is not an encrypted envelope")
        plaintext = decrypt_payload(envelope, config=config)
        body = json.loads(plaintext)
        if plaintext != payload(body["n"]):
            sys.exit(f"{path}: decrypted payload differs from what was published")
        seen.add(body["n"])
    if len(seen) != args.count:
        sys.exit(f"expected {args.count} distinct decrypted records, found {len(seen)}")
    print(f"nats-sinks decrypted {len(seen)} records written by sinkhost")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--url", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--key-b64", required=True)
    p.add_argument("--key-id", required=True)
    p.add_argument("--tamper-every", type=int, default=0)
    v = sub.add_parser("verify-records")
    v.add_argument("--dir", required=True)
    v.add_argument("--count", type=int, required=True)
    v.add_argument("--key-b64", required=True)
    v.add_argument("--key-id", required=True)
    args = parser.parse_args()
    if args.command == "publish":
        asyncio.run(publish(args))
    else:
        verify_records(args)


if __name__ == "__main__":
    main()
