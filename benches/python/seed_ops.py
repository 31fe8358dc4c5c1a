#!/usr/bin/env python3
"""The pure-Python column of the seed's performance table (driven by benches/seed_table.rs).

Times the operations of the seed's table in plain Python 3 (standard library only), on the same
input files (benches/data/) and against the same loopback servers as the Rust side, and prints
one JSON object: the median time per operation in nanoseconds, and how it was measured.

The operations, each the pure-Python counterpart of the plugins measured in Rust:

  json   json.loads of the ~1 KB request, then the value at json.customer.address.city
  regex  a precompiled re pattern's search over the 199-byte text (is there a match)
  rules  the seed's three content-moderation rules (spam phrases, profanity by whole word
         ignoring case, default), tried in priority order, first match wins
  http   a GET on a kept-open http.client connection, the JSON body parsed (the Rust clients
         pool their connections too; the server keeps them open)
  llm    a chat-completions POST as an OpenAI-compatible client makes it at the least: the body
         serialized per call, the answer parsed, the text taken out, on a kept-open connection
         (no SDK: the openai package would add httpx and pydantic on top)

Method (criterion's, so the two columns compare): a warm-up of --warm-up-time seconds running
the operation in doubling batches gives the mean time per call; then 100 samples, sample i
running i*d calls, d chosen so all samples take about --measurement-time seconds; a sample's
time per call is its elapsed time (time.perf_counter_ns) divided by its calls; the figure is
the median of the 100. Each operation's result is checked before it is timed.

  python3 benches/python/seed_ops.py --data benches/data --http-url URL --llm-base URL/v1
"""
import argparse
import http.client
import json
import math
import platform
import re
import statistics
import sys
import time
import urllib.parse

SAMPLES = 100


def read(data_dir, name):
    with open(f"{data_dir}/{name}", encoding="utf-8") as f:
        return f.read().rstrip("\n")


def measure(op, warm_up_s, measurement_s):
    """Median nanoseconds per call of `op`, criterion's way (see the module docs)."""
    clock = time.perf_counter_ns
    iters, total_iters = 1, 0
    start = clock()
    while True:
        for _ in range(iters):
            op()
        total_iters += iters
        elapsed = clock() - start
        if elapsed >= warm_up_s * 1e9:
            break
        iters *= 2
    mean = elapsed / total_iters
    total_runs = SAMPLES * (SAMPLES + 1) / 2
    d = max(1, math.ceil(measurement_s * 1e9 / mean / total_runs))
    per_call = []
    for i in range(1, SAMPLES + 1):
        calls = i * d
        t0 = clock()
        for _ in range(calls):
            op()
        per_call.append((clock() - t0) / calls)
    return {
        "median_ns": statistics.median(per_call),
        "samples": SAMPLES,
        "calls": int(d * total_runs),
    }


# ---- the operations -----------------------------------------------------------------------------

PROFANITY = frozenset(
    ["asshole", "bastard", "bitch", "bullshit", "crap", "damn", "dick", "fuck", "fucking",
     "motherfucker", "shit"]
)  # bilayer's ProfanityFilter default list
NOT_ALPHANUMERIC = re.compile(r"[\W_]+")
PRIORITY = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def has_profanity(text):
    return any(word.lower() in PROFANITY for word in NOT_ALPHANUMERIC.split(text) if word)


RULES = sorted(
    [
        {
            "name": "spam_filter",
            "priority": "critical",
            "condition": lambda msg: "BUY NOW" in msg or "CLICK HERE" in msg,
            "action": lambda msg: {"decision": "block", "reason": "spam"},
        },
        {
            "name": "profanity_filter",
            "priority": "high",
            "condition": has_profanity,
            "action": lambda msg: {"decision": "flag", "reason": "profanity"},
        },
        {
            "name": "allow_default",
            "priority": "low",
            "condition": lambda msg: True,
            "action": lambda msg: {"decision": "allow"},
        },
    ],
    key=lambda rule: PRIORITY[rule["priority"]],
)


def evaluate(message):
    for rule in RULES:
        if rule["condition"](message):
            decision = rule["action"](message)
            decision["rule"] = rule["name"]
            return decision
    return {"rule": None}


def operations(args):
    request = read(args.data, "json_request.json")
    text = read(args.data, "regex_input.txt")
    pattern = re.compile(read(args.data, "regex_pattern.txt"))
    message = read(args.data, "moderation_message.txt")
    http_url = urllib.parse.urlsplit(args.http_url)
    llm_url = urllib.parse.urlsplit(args.llm_base.rstrip("/") + "/chat/completions")
    llm_body = {
        "model": "test-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": False,
    }
    llm_headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}

    def json_op():
        return json.loads(request)["json"]["customer"]["address"]["city"]

    def regex_op():
        return pattern.search(text) is not None

    def rules_op():
        return evaluate(message)

    http_conn = http.client.HTTPConnection(http_url.hostname, http_url.port)
    llm_conn = http.client.HTTPConnection(llm_url.hostname, llm_url.port)

    def http_op():
        http_conn.request("GET", http_url.path)
        response = http_conn.getresponse()
        return response.status, json.loads(response.read())

    def llm_op():
        llm_conn.request("POST", llm_url.path, json.dumps(llm_body), llm_headers)
        answer = json.loads(llm_conn.getresponse().read())
        return answer["choices"][0]["message"]["content"]

    checks = {
        "json": (json_op, lambda r: r == "Lisbon"),
        "regex": (regex_op, lambda r: r is True),
        "rules": (rules_op, lambda r: r == {"rule": "allow_default", "decision": "allow"}),
        "http": (http_op, lambda r: r[0] == 200 and r[1]["status"] == "shipped"),
        "llm": (llm_op, lambda r: isinstance(r, str) and r.startswith("Hello")),
    }
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="benches/data")
    parser.add_argument("--http-url", required=True, help="the loopback GET URL")
    parser.add_argument("--llm-base", required=True, help="the loopback server's /v1 URL")
    parser.add_argument("--warm-up-time", type=float, default=3.0)
    parser.add_argument("--measurement-time", type=float, default=5.0)
    parser.add_argument("--only", nargs="*", help="operations to time (default: all)")
    args = parser.parse_args()

    results = {}
    for name, (op, check) in operations(args).items():
        if args.only and name not in args.only:
            continue
        result = op()
        if not check(result):
            sys.exit(f"seed_ops.py: {name} returned {result!r}")
        results[name] = measure(op, args.warm_up_time, args.measurement_time)
        print(
            f"python/{name}: median {results[name]['median_ns'] / 1e3:.2f} µs",
            file=sys.stderr,
        )
    json.dump(
        {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "warm_up_time_s": args.warm_up_time,
            "measurement_time_s": args.measurement_time,
            "medians_ns": {name: r["median_ns"] for name, r in results.items()},
            "calls": {name: r["calls"] for name, r in results.items()},
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
