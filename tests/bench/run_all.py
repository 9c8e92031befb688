"""`make bench`: run every benchmark and print its figures (a table and a JSON line each)."""

from __future__ import annotations

from tests.bench import bench_acquisition


def main() -> None:
    bench_acquisition.main()


if __name__ == "__main__":
    main()
