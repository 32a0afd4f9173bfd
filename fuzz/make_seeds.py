#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ (docs/RELIABILITY.md, "Fuzzing").

  fuzz/make_seeds.py [--sim build/sim/klarna-sim]

- envelope, events: the webhook fixtures (tests/fixtures/webhooks/) as they are.
- receiver_request: each fixture as an HTTP request signed with the fuzz target's key,
  plus a few requests each refusal reason starts from (chunked, pipelined, HTTP/1.0,
  framing errors, Expect: 100-continue).
- signature: a key id, a Klarna-Signature value, a secret and a body (valid, wrong,
  uppercase, unknown key).
- commands: one command of every type (schemas/command.schema.json), interoperability
  tokens, and a few refusals.
- api_answer: answers recorded from a running klarna-sim (with --sim; 201, 200, 4xx error
  bodies, 429 and 503 from its fault rules), plus hand-written edge shapes.

Every seed of a target that reads its first byte as a control byte (receiver_request,
api_answer) starts with 0x00: one read with everything.
"""
import argparse
import base64
import hashlib
import hmac
import json
import pathlib
import socket
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FIXTURES = ROOT / "tests" / "fixtures" / "webhooks"

# fuzz/fuzz_receiver_request.cpp
KEY_ID = "fuzz-key-1"
SECRET = b"fuzz-signing-secret"
PATH = "/webhooks/klarna"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def fixtures():
    return sorted(FIXTURES.glob("*.json"))


def request(body, headers=None, method="POST", path=PATH, version="1.1", sign=True):
    h = {"Host": "receiver.example", "Content-Type": "application/json"}
    if sign:
        h["Klarna-Signing-Key-Id"] = KEY_ID
        h["Klarna-Signature"] = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {path} HTTP/{version}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
    return head.encode() + b"\r\n" + body


def chunked(body):
    sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: r\r\nKlarna-Signing-Key-Id: {KEY_ID}\r\n"
            f"Klarna-Signature: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n")
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    out = head.encode()
    for p in parts:
        out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"


def receiver_seeds():
    for f in fixtures():
        write("receiver_request", f.stem, b"\x00" + request(f.read_bytes()))
    body = (FIXTURES / "payment.request.state-change.authorized.v1.json").read_bytes()
    small = b'{"metadata":{"event_id":"e1","event_type":"payment.request.state-change.authorized",' \
            b'"event_version":"v1"},"payload":{"payment_request_id":"krn:pr:1"}}'
    seeds = {
        "pipelined": request(small, {"Connection": "keep-alive"}) + request(small),
        "chunked": chunked(small),
        "http10_keep_alive": request(small, {"Connection": "keep-alive"}, version="1.0"),
        "expect_100": request(small, {"Expect": "100-continue"}),
        "query_string": request(small, path=PATH + "?source=klarna"),
        "bad_signature": request(small, {"Klarna-Signature": "0" * 64}),
        "unknown_key": request(small, {"Klarna-Signing-Key-Id": "retired-key"}),
        "no_signature": request(small, sign=False),
        "wrong_method": request(b"", method="GET", sign=False),
        "wrong_path": request(small, path="/other"),
        "not_json": request(b"this is not json"),
        "dead_letter_no_metadata": request(b'{"payload":{}}'),
        "te_and_cl": request(small, {"Transfer-Encoding": "chunked"}),
        "te_http10": chunked(small).replace(b"HTTP/1.1", b"HTTP/1.0"),
        "te_gzip": chunked(small).replace(b"chunked", b"gzip"),
        "repeated_headers": request(small, {"klarna-signature": "1" * 64, "content-type": "text/plain"}),
        "oversized_body_small_limits": b"\x80" + request(body * 2),
        "split_reads": request(small),
    }
    for name, data in seeds.items():
        prefix = b"" if name == "oversized_body_small_limits" else (
            b"\x07" if name == "split_reads" else b"\x00")
        write("receiver_request", name, prefix + data)


def envelope_seeds():
    for f in fixtures():
        for target in ("envelope", "events"):
            write(target, f.stem, f.read_bytes())


def fdp_string(s):
    """A string as FuzzedDataProvider::ConsumeRandomLengthString reads it."""
    return s.replace(b"\\", b"\\\\") + b"\\ "


def signature_seeds():
    # fuzz/fuzz_signature.cpp: key id, Klarna-Signature, a secret, then the body.
    body = (FIXTURES / "payment.transaction.captured.v2.json").read_bytes()
    good = hmac.new(b"secret-one", body, hashlib.sha256).hexdigest().encode()
    seeds = {
        "valid": (b"key-1", good, b"secret-one"),
        "wrong_signature": (b"key-1", b"0" * 64, b"another secret"),
        "uppercase_hex": (b"key-1", good.upper(), b""),
        "empty_secret_key": (b"key-2", hmac.new(b"", body, hashlib.sha256).hexdigest().encode(), b""),
        "unknown_key": (b"retired", good, b"k\\ey"),
    }
    for name, (kid, sig, secret) in seeds.items():
        write("signature", name, fdp_string(kid) + fdp_string(sig) + fdp_string(secret) + body)


def command_signature_seeds():
    # fuzz/fuzz_command_signature.cpp: the kpay-sender and kpay-signature
    # values, the command body, then (read from the end) has-signature and
    # has-sender bytes.
    body = (b'{"command_id":"c-1","type":"refund","payment_transaction_id":"t-1",'
            b'"amount":100,"issued_at":"2026-12-06T10:00:00Z"}')
    good = hmac.new(b"refunds-secret-one-0123456789", body, hashlib.sha256).hexdigest().encode()
    seeds = {
        "valid": (b"\x01\x01", b"refunds", b"kid=k1;v1=" + good),
        "wrong_signature": (b"\x01\x01", b"refunds", b"kid=k1;v1=" + b"0" * 64),
        "retired_key": (b"\x01\x01", b"refunds", b"kid=k0;v1=" + good),
        "unknown_sender": (b"\x01\x01", b"nobody", b"kid=k1;v1=" + good),
        "uppercase_hex": (b"\x01\x01", b"refunds", b"kid=k1;v1=" + good.upper()),
        "unsigned": (b"\x00\x00", b"", b""),
        "sender_only": (b"\x01\x00", b"refunds", b""),
    }
    for name, (flags, sender, sig) in seeds.items():
        write("command_signature", name, fdp_string(sender) + fdp_string(sig) + body + flags)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload):
    return b64url(b'{"alg":"ES256","typ":"JWT"}') + "." + b64url(payload) + "." + b64url(b"sig")


def command_seeds():
    auth = {"command_id": "c-auth", "type": "authorize", "partner_account_id": "acc",
            "amount": 1000, "currency": "EUR", "payment_transaction_reference": "order-1",
            "capture": "LATER", "customer_token": "tok/customer+123",
            "interoperability_token": jwt(b'{"status":"PAYMENT_NOT_SUPPORTED"}'),
            "interoperability_data": "{\"a\":1}",
            "supplementary_purchase_data": {"purchase_reference": "p1"},
            "step_up_config": {"customer_interaction_config": {"method": "HANDOVER"}}}
    commands = {
        "register": {"command_id": "c-reg", "type": "register", "partner_account_id": "acc",
                     "payment_request_reference": "ref-1", "amount": 500, "currency": "SEK",
                     "capture": "NOW", "klarna_interoperability_token": jwt(b"{}")},
        "authorize": auth,
        "capture": {"command_id": "c-cap", "type": "capture", "payment_transaction_id": "krn:tx:1",
                    "amount": 400, "reference": "cap-1", "supplementary_capture_data": {}},
        "capture_all": {"command_id": "c-cap2", "type": "capture", "payment_transaction_id": "t"},
        "refund": {"command_id": "c-ref", "type": "refund", "payment_capture_id": "krn:cap:1",
                   "amount": 100, "reference": "r"},
        "void": {"command_id": "c-void", "type": "void", "payment_transaction_id": "krn:tx:1"},
        "cancel": {"command_id": "c-cancel", "type": "cancel", "payment_request_id": "krn:pr:1"},
        "dispute_accept_loss": {"command_id": "c-d1", "type": "dispute_accept_loss",
                                "payment_dispute_id": "krn:d:1"},
        "dispute_represent": {"command_id": "c-d2", "type": "dispute_represent",
                              "payment_dispute_id": "krn:d:1",
                              "attachments": [{"payment_dispute_attachment_id": "att-1",
                                               "description": "receipt"}],
                              "additional_information": "shipped on time \u00e9",
                              "partner_proposed_refund_amount": 0},
        "dispute_appeal": {"command_id": "c-d3", "type": "dispute_appeal",
                           "payment_dispute_id": "krn:d:1", "additional_information": "appeal"},
        "refund_both_ids": {"command_id": "c-x", "type": "refund", "payment_capture_id": "a",
                            "payment_transaction_id": "b", "amount": 1},
        "bad_token": dict(auth, interoperability_token="a*c.def.ghi"),
        "unknown_type": {"command_id": "c", "type": "explode"},
        "command_id_number": {"command_id": 7, "type": "void"},
    }
    for name, c in commands.items():
        write("commands", name, json.dumps(c, ensure_ascii=False, indent=1 if name == "authorize" else None))
    write("commands", "not_object", "[1,2,3]")
    write("commands", "not_json", "{\"command_id\":")


def http_answer(status, reason, body=b"", headers=None):
    h = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    h.update(headers or {})
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + body


def answer_seeds():
    err = json.dumps({"error_id": "e-1", "error_type": "ACCESS_ERROR", "error_code": "RATE_LIMITED",
                      "error_message": "slow down"}).encode()
    seeds = {
        "ok_no_body": http_answer(204, "No Content"),
        "rate_limited_reset": http_answer(429, "Too Many Requests", err,
                                          {"X-Ratelimit-Reset": "2.5", "Retry-After": "3"}),
        "unavailable_unix_reset": http_answer(503, "Service Unavailable", b"",
                                              {"X-Ratelimit-Reset": "1999999999"}),
        "unavailable_http_date": http_answer(503, "Service Unavailable", b"",
                                             {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        "chunked": (b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n"
                    b"Klarna-Correlation-Id: corr-1\r\n\r\n"
                    + f"{len(err):x}\r\n".encode() + err + b"\r\n0\r\n\r\n"),
        "until_close": b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n{\"error_code\":\"X\"}",
        "http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "truncated": http_answer(201, "Created", b'{"payment_request_id":"krn:pr:1"}')[:-5],
    }
    for name, data in seeds.items():
        write("api_answer", name, b"\x00" + data)


def free_port_file(tmp):
    return pathlib.Path(tmp) / "port.json"


def raw_exchange(port, req):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def api_request(method, path, body=None, auth=True, idem=None):
    body = json.dumps(body).encode() if body is not None else b""
    h = [f"{method} {path} HTTP/1.1", "Host: sim", "Connection: close"]
    if auth:
        h.append("Authorization: Basic klarna-sim-api-key")
    if idem:
        h.append(f"Klarna-Idempotency-Key: {idem}")
    if body:
        h += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def record_sim(sim):
    with tempfile.TemporaryDirectory() as tmp:
        port_file = free_port_file(tmp)
        proc = subprocess.Popen([sim, "--port", "0", "--port-file", str(port_file)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("klarna-sim did not start")
                time.sleep(0.05)
            port = json.loads(port_file.read_text())["port"]
            acc = "/v2/accounts/acc-1/payment"
            calls = {
                "sim_201_request": api_request("POST", acc + "/requests",
                                               {"currency": "EUR", "amount": 1000,
                                                "payment_request_reference": "o-1"}, idem="k1"),
                "sim_404": api_request("GET", acc + "/requests/krn:nope"),
                "sim_401": api_request("GET", acc + "/requests/krn:nope", auth=False),
                "sim_400": api_request("POST", acc + "/requests", {"amount": "x"}, idem="k2"),
                "sim_200_settlements": api_request("GET", "/v2/settlements"),
            }
            for name, req in calls.items():
                write("api_answer", name, b"\x00" + raw_exchange(port, req))
            for rule, name in (("*:429:100:7", "sim_429"), ("*:503:100", "sim_503")):
                raw_exchange(port, api_request("POST", "/_sim/faults", {"rules": [rule]}, auth=False))
                write("api_answer", name, b"\x00" + raw_exchange(port, calls["sim_404"]))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", help="klarna-sim binary: record its answers for api_answer")
    args = ap.parse_args()
    receiver_seeds()
    envelope_seeds()
    signature_seeds()
    command_signature_seeds()
    command_seeds()
    answer_seeds()
    if args.sim:
        record_sim(args.sim)
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
