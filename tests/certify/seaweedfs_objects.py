#!/usr/bin/env python3
"""Looks at a SeaweedFS bucket through its filer's HTTP API, for
`sinkhost certify`'s verifier and record lookup in the S3 sink's test.

    seaweedfs_objects.py FILER_HOST:PORT BUCKET count
        prints how many objects the bucket holds
    seaweedfs_objects.py FILER_HOST:PORT BUCKET find TEXT
        prints the first object whose bytes contain TEXT (exit 1 if none)
"""
import json
import sys
import urllib.parse
import urllib.request


def listing(filer, directory):
    last = ""
    while True:
        query = urllib.parse.urlencode({"limit": 1000, "lastFileName": last})
        request = urllib.request.Request(
            f"http://{filer}{urllib.parse.quote(directory)}/?{query}",
            headers={"Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                page = json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return
            raise
        entries = page.get("Entries") or []
        for entry in entries:
            yield entry
        if len(entries) < 1000 or not page.get("ShouldDisplayLoadMore"):
            return
        last = entries[-1]["FullPath"].rsplit("/", 1)[-1]


def objects(filer, bucket):
    pending = [f"/buckets/{bucket}"]
    while pending:
        directory = pending.pop()
        for entry in listing(filer, directory):
            if entry.get("Mode", 0) & (1 << 31):
                pending.append(entry["FullPath"])
            else:
                yield entry["FullPath"]


def main():
    filer, bucket, action = sys.argv[1], sys.argv[2], sys.argv[3]
    if action == "count":
        print(sum(1 for _ in objects(filer, bucket)))
        return 0
    needle = sys.argv[4].encode()
    for path in objects(filer, bucket):
        with urllib.request.urlopen(f"http://{filer}{urllib.parse.quote(path)}", timeout=30) as response:
            body = response.read()
        if needle in body:
            sys.stdout.write(body.decode("utf-8", "replace"))
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
