#!/usr/bin/env python3
"""Regenerates tests/s3/sigv4_vectors.inc: SigV4 signatures computed by botocore.

pipemode's signer (include/pipemode/s3/sigv4.hpp) must produce exactly the headers botocore's
S3SigV4Auth adds, so its test compares against requests signed here. The output is a C++
include, so the test needs neither Python nor a path to a data file at run time.

Run with the Python that has botocore (the default python3 on the PATH):
    python3 scripts/dev/gen_sigv4_vectors.py > tests/s3/sigv4_vectors.inc
"""
import datetime
import sys
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLE+token/with=odd+chars=="

T1 = datetime.datetime(2024, 2, 29, 23, 59, 58)   # leap day, just before midnight
T2 = datetime.datetime(2013, 5, 24, 0, 0, 0)
T3 = datetime.datetime(2026, 11, 28, 1, 8, 21)

AWS_HOST = "examplebucket.s3.amazonaws.com"
EU_HOST = "data-bucket.s3.eu-west-3.amazonaws.com"
PATH_HOST = "s3.eu-west-3.amazonaws.com"
LOCAL_HOST = "127.0.0.1:9000"

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED = "UNSIGNED-PAYLOAD"


def case(name, path, *, method="GET", host=AWS_HOST, scheme="https", region="us-east-1",
         query=(), headers=(), token="", when=T1, payload=EMPTY, key_id=KEY_ID, secret=SECRET, service="s3"):
    return dict(name=name, method=method, host=host, scheme=scheme, path=path, query=list(query),
                headers=list(headers), token=token, when=when, payload=payload, region=region,
                key_id=key_id, secret=secret, service=service)


CASES = [
    case("plain key", "/train/part-0001.rec"),
    case("root path", "/"),
    case("key with spaces", "/my data/part 0001.rec"),
    case("key with plus and equals", "/a+b=c/x+y.rec"),
    case("key with tilde and unreserved marks", "/a~b/c-d_e.f~g"),
    case("key with reserved marks", "/!$&'()*,;:@[]/q?.rec"),
    case("double slash kept", "/dir//file.rec"),
    case("leading double slash", "//rooted/file.rec"),
    case("literal percent", "/100%/50%25.rec"),
    case("trailing slash", "/prefix/"),
    case("dot segments kept", "/a/./b/../c.rec"),
    case("utf8 french", "/données/é.rec", host=EU_HOST, region="eu-west-3"),
    case("utf8 cjk", "/数据/训练集 01.rec", host=EU_HOST, region="eu-west-3"),
    case("utf8 emoji", "/emoji/\U0001F600.rec"),
    case("control and hash", "/tab\there/hash#1.rec"),
    case("range header", "/train/part-0001.rec", headers=[("Range", "bytes=0-8388607")]),
    case("range header mid object", "/train/part-0001.rec",
         headers=[("Range", "bytes=8388608-16777215")], when=T3),
    case("head request", "/train/part-0001.rec", method="HEAD"),
    case("head with session token", "/train/part-0001.rec", method="HEAD", token=TOKEN),
    case("session token with range", "/train/part 0001.rec", token=TOKEN,
         headers=[("Range", "bytes=0-99")]),
    case("unsigned payload", "/train/part-0001.rec", payload=UNSIGNED),
    case("unsigned payload with token", "/x.rec", payload=UNSIGNED, token=TOKEN,
         host=EU_HOST, region="eu-west-3"),
    case("path style eu-west-3", "/data-bucket/train/part-0001.rec", host=PATH_HOST,
         region="eu-west-3"),
    case("path style double slash", "/data-bucket//x//y.rec", host=PATH_HOST, region="eu-west-3"),
    case("local port", "/bucket/train/part-0001.rec", host=LOCAL_HOST, scheme="http"),
    case("local port with range", "/bucket/a b+c.rec", host=LOCAL_HOST, scheme="http",
         headers=[("Range", "bytes=100-199")]),
    case("local port list", "/bucket", host=LOCAL_HOST, scheme="http",
         query=[("list-type", "2"), ("prefix", "a b/")]),
    case("list objects v2", "/",
         query=[("list-type", "2"), ("prefix", "a b/"),
                ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=+/=")]),
    case("list objects v2 max keys", "/",
         query=[("max-keys", "1000"), ("list-type", "2"), ("prefix", "données/"),
                ("delimiter", "/")], host=EU_HOST, region="eu-west-3"),
    case("list start after", "/", query=[("start-after", "k~e y.rec"), ("list-type", "2"),
                                        ("encoding-type", "url")]),
    case("query without value", "/object.rec", query=[("uploads", "")]),
    case("query repeated key sorted by value", "/",
         query=[("tag", "b"), ("tag", "a"), ("Tag", "c")]),
    case("query value needing encoding", "/", query=[("prefix", "+=&?#%~")]),
    case("headers sorted and trimmed", "/x.rec",
         headers=[("X-Amz-Meta-Zeta", "  z  value  "), ("X-Amz-Meta-Alpha", "a\t\tb"),
                  ("If-None-Match", "\"etag\"")]),
    case("repeated header joined", "/x.rec",
         headers=[("X-Amz-Meta-Multi", "one"), ("x-amz-meta-multi", " two ")]),
    case("unsigned headers skipped", "/x.rec",
         headers=[("User-Agent", "pipemode/0.1"), ("Connection", "keep-alive"),
                  ("Range", "bytes=0-9")]),
    case("lowercase method", "/x.rec", method="get"),
    case("other date", "/photos/2013.jpg", when=T2, host=EU_HOST, region="eu-west-3",
         token=TOKEN),
    case("secret with plus", "/x.rec", secret="abc+def/ghi=jkl", key_id="AKIDPLUS"),
    case("aws documented get object", "/test.txt", when=T2,
         headers=[("Range", "bytes=0-9")]),
    case("long key", "/" + "/".join(["segment%02d" % i for i in range(40)]) + "/end.rec"),
    # Services other than S3 (botocore's SigV4Auth): the path is normalized and encoded twice,
    # and no X-Amz-Content-SHA256 header is added.
    case("generic dot segments", "/a/./b/../c/", service="service",
         host="example.amazonaws.com"),
    case("generic double slashes", "//a//b//", service="service", host="example.amazonaws.com"),
    case("generic space and percent", "/a b/100%.txt", service="service",
         host="example.amazonaws.com", query=[("Param", "v a/l")]),
    case("generic utf8 with token", "/données/é", service="sts", region="eu-west-3",
         host="sts.eu-west-3.amazonaws.com", token=TOKEN),
    case("generic parent above root", "/../../x", service="service",
         host="example.amazonaws.com", headers=[("My-Header1", "  value  1 ")]),
]


def sign(c):
    url = f"{c['scheme']}://{c['host']}" + quote(c["path"].encode("utf-8"), safe="/~")
    request = AWSRequest(method=c["method"], url=url, headers=None,
                         params=list(c["query"]) if c["query"] else None)
    # AWSRequest's headers append on repeated names, as HTTP does.
    for name, value in c["headers"]:
        request.headers[name] = value
    if c["payload"] == UNSIGNED:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    credentials = Credentials(c["key_id"], c["secret"], c["token"] or None)
    if c["service"] == "s3":
        auth = S3SigV4Auth(credentials, "s3", c["region"])
    else:
        auth = SigV4Auth(credentials, c["service"], c["region"])
    # botocore reads the clock through this function only; pin it.
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: c["when"]
    try:
        auth.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    added = [(n, request.headers[n]) for n in
             ("X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256", "Authorization")
             if n in request.headers]
    return added


def cpp(s):
    """A C++ string literal holding the UTF-8 bytes of s."""
    out = []
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7f and ch != "?":  # '?' avoids trigraph-like sequences
            out.append(ch)
        else:
            out.append('\\%03o' % b)
    return '"' + "".join(out) + '"'


def pairs(ps):
    return "{" + ", ".join("{%s, %s}" % (cpp(a), cpp(b)) for a, b in ps) + "}"


def main():
    print("// Generated by scripts/dev/gen_sigv4_vectors.py with botocore %s: do not edit."
          % botocore.__version__)
    print("// Requests signed by botocore's S3SigV4Auth (SigV4Auth for other services) and the")
    print("// headers it added; each entry initializes a sigv4_vector in tests/s3/sigv4.test.cpp.")
    for c in CASES:
        added = sign(c)
        epoch = int(c["when"].replace(tzinfo=datetime.timezone.utc).timestamp())
        print("{%s," % cpp(c["name"]))
        print(" %s, %s, %s, %s, %s," % (cpp(c["method"]), cpp(c["host"]), cpp(c["path"]),
                                         pairs(c["query"]), pairs(c["headers"])))
        print(" %s, %s, %s, %s, %s, %s, %dLL," % (cpp(c["payload"]), cpp(c["key_id"]),
                                                  cpp(c["secret"]), cpp(c["token"]),
                                                  cpp(c["region"]), cpp(c["service"]), epoch))
        print(" %s}," % pairs(added))
    return 0


if __name__ == "__main__":
    sys.exit(main())
