"""An S3-compatible server on 127.0.0.1 for the tests and benchmarks: moto's server mode (the
``moto[server]`` package), in its own process, with authentication on (so bad credentials fail
as they do on S3), plus ``SlowProxy``: a TCP proxy that adds a delay before each response and
paces each connection to a bandwidth, standing in for a far-away object store.

Tests use the session fixtures ``s3`` (a started server) and ``s3_bucket`` (a fresh bucket per
test); benchmarks use ``MotoServer`` and ``SlowProxy`` directly.
"""
import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env():
    env = dict(os.environ)
    # the server is not the code under test: no sanitizer runtime, normal allocator
    for name in ("LD_PRELOAD", "PYTHONMALLOC", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONPATH"):
        env.pop(name, None)
    # these requests create the IAM user whose keys the tests use; every later request is
    # authenticated (IAM policy + signature), like S3
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    return env


class MotoServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=_clean_env())
        atexit.register(self.stop)  # also when the caller dies with an exception
        try:
            self._wait_ready()
            self.key, self.secret = self._make_user()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("moto server exited with %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start within %d s" % timeout)
                time.sleep(0.1)

    def _make_user(self):
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="fastjoblib")
        iam.put_user_policy(UserName="fastjoblib", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="fastjoblib")["AccessKey"]
        return k["AccessKeyId"], k["SecretAccessKey"]

    def storage_options(self, endpoint=None, **extra):
        opts = dict(key=self.key, secret=self.secret,
                    client_kwargs={"endpoint_url": endpoint or self.endpoint,
                                   "region_name": REGION})
        opts.update(extra)
        return opts

    def boto3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def new_bucket(self):
        name = "fj-" + uuid.uuid4().hex[:16]
        self.boto3_client().create_bucket(Bucket=name)
        return name

    def stop(self):
        atexit.unregister(self.stop)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


class SlowProxy:
    """TCP proxy on 127.0.0.1 in front of `target_port`: every response (each burst of bytes
    from the server after a request) is delayed by `delay` seconds before its first byte, and
    each connection's server-to-client and client-to-server bytes are paced to `rate` bytes/s.
    One thread per direction per connection."""

    def __init__(self, target_port, delay=0.020, rate=50e6):
        self.target_port = target_port
        self.delay = delay
        self.rate = rate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"request_pending": False}
            threading.Thread(target=self._pump, args=(client, server, state, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, True),
                             daemon=True).start()

    def _pump(self, src, dst, state, is_response):
        clock = 0.0  # when the bytes sent so far may have left at `rate` (no credit for idling)
        try:
            while True:
                data = src.recv(256 << 10)
                if not data:
                    break
                if is_response and state["request_pending"]:
                    # the first bytes of a response: one round trip's worth of delay
                    state["request_pending"] = False
                    time.sleep(self.delay)
                elif not is_response:
                    state["request_pending"] = True
                for i in range(0, len(data), 64 << 10):
                    piece = data[i:i + (64 << 10)]
                    now = time.monotonic()
                    clock = max(clock, now) + len(piece) / self.rate
                    if clock > now:
                        time.sleep(clock - now)
                    dst.sendall(piece)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.closed = True
        self.sock.close()


try:
    import pytest
except ImportError:  # pragma: no cover (benchmarks without pytest)
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def s3():
        """A moto S3 server on 127.0.0.1 for the whole session (stopped at the end)."""
        pytest.importorskip("s3fs")
        pytest.importorskip("moto.server")
        server = MotoServer()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def s3_bucket(s3):
        """A new, empty bucket on the session's server: its name."""
        return s3.new_bucket()


def main(argv):
    """``python tests/s3server.py proxy TARGET_PORT [DELAY_S RATE_BPS]``: run a SlowProxy in
    this process and print its port (the benchmark runs it apart from the client's GIL)."""
    if argv[:1] == ["proxy"]:
        proxy = SlowProxy(int(argv[1]), *(float(x) for x in argv[2:4]))
        print(proxy.port, flush=True)
        try:
            sys.stdin.read()
        finally:
            proxy.close()
        return 0
    print(main.__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
