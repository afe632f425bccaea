"""Signs ECS calls with botocore's own SigV4 signer, for the front door tests.

Reads from stdin a JSON object {"endpoint", "region", "key", "secret", "calls":
[{"target", "body", "headers"?}...]} and prints a JSON list with, for each call, the method,
path, headers (a list of [name, value] in the order to send, Host included) and
body exactly as botocore would send them.
"""
import json
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    spec = json.load(sys.stdin)
    creds = Credentials(spec["key"], spec["secret"])
    out = []
    for call in spec["calls"]:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": call["target"],
            "User-Agent": "front-door-test botocore",
        }
        # Extra headers are signed too (botocore signs all but a few).
        headers.update(call.get("headers", {}))
        req = AWSRequest(
            method="POST",
            url=spec["endpoint"] + "/",
            data=call["body"].encode(),
            headers=headers,
        )
        SigV4Auth(creds, "ecs", spec["region"]).add_auth(req)
        headers = [["Host", urlsplit(spec["endpoint"]).netloc]]
        headers += [[k, v] for k, v in req.headers.items()]
        out.append({
            "method": req.method,
            "path": "/",
            "headers": headers,
            "body": call["body"],
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
