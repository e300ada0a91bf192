import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# the session's S3-compatible server (moto[server]) and a bucket per test: tests/s3server.py
from s3server import s3, s3_bucket  # noqa: E402,F401
