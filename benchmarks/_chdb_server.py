"""A stand-in ClickHouse server for the `--clickhouse-url` figures (no ClickHouse server package
recent enough can be installed here): the same engine, chDB, in a process of its own, answering the
part of ClickHouse's HTTP interface clickhouse-connect uses (a query in the body or the `query`
parameter, settings as parameters, an INSERT's data as the body; answers in the asked format,
errors with the exception code). Not a benchmark, and not for anything but the benchmarks.

    python benchmarks/_chdb_server.py DATA_DIR PORT_FILE
"""

from __future__ import annotations

import gzip
import http.server
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import lz4.frame
from chdb import session

_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\S+)(\s*\([^)]*\))?\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE | re.DOTALL)
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": lz4.frame.decompress,
    "gzip": gzip.decompress,
}
_CLIENT_PARAMS = {"query", "database", "session_id", "query_id", "compress", "decompress", "wait_end_of_query"}


class _Engine:
    def __init__(self, path: str) -> None:
        self.session = session.Session(path)
        self.lock = threading.Lock()
        # beside the data, in the caller's directory: removed with it, not left in the system's temp
        self.spool = Path(path).resolve().parent / f"{Path(path).name}-spool"
        self.spool.mkdir(parents=True, exist_ok=True)

    def run(self, sql: str, params: dict[str, str], body: bytes | None) -> tuple[bytes, str]:
        settings = {
            k: v
            for k, v in params.items()
            if k not in _CLIENT_PARAMS and not k.startswith("param_") and k != "enable_http_compression"
        }
        clause = ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())
        with self.lock:
            if params.get("database"):
                self.session.query(f"USE {params['database']}")
            insert = _INSERT.match(sql)
            if insert is not None and body is not None:
                data = self.spool / "body"
                data.write_bytes(body)
                table, columns, fmt = insert.groups()
                sql = f"INSERT INTO {table}{columns or ''} FROM INFILE {_literal(str(data))}"
                sql += f" SETTINGS {clause}" if clause else ""
                self.session.query(f"{sql} FORMAT {fmt}")
                return b"", "TabSeparated"
            found = _FORMAT.search(sql)
            fmt = found.group(1) if found else "TabSeparated"
            sql = sql[: found.start()] if found else sql
            if clause:
                self.session.query(f"SET {clause}")
            return self.session.query(sql, fmt).bytes(), fmt


def _literal(v: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def main() -> None:
    engine = _Engine(sys.argv[1])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return bytes(out)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            body = self._body()
            encoding = self.headers.get("Content-Encoding", "")
            if encoding:
                try:
                    body = _DECODERS[encoding](body)
                except (KeyError, ValueError, RuntimeError) as e:
                    self._answer(400, f"Code: 1. DB::Exception: cannot decode {encoding}: {e}\n".encode())
                    return
            sql, data = (params["query"], body) if "query" in params else (body.decode(), None)
            try:
                out, fmt = engine.run(sql, params, data)
            except Exception as e:  # noqa: BLE001 - every engine error goes back as ClickHouse's answer
                message = str(e).strip()
                code = re.match(r"Code: (\d+)", message)
                self._answer(500, (message + "\n").encode(), code.group(1) if code else "1")
                return
            self._answer(200, out, fmt=fmt)

        def do_GET(self) -> None:
            self.do_POST()

        def _answer(self, status: int, body: bytes, code: str | None = None, fmt: str = "TabSeparated") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-ClickHouse-Format", fmt)
            if code is not None:
                self.send_header("X-ClickHouse-Exception-Code", code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
