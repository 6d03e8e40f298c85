"""Where the real data that tests and benchmarks read lies: `../shared/data`, beside the checkout, never copied
into it (its README says why). A fresh clone has none; the tests that read it carry the `shared_data` marker and
are skipped there, with the reason, by tests/conftest.py."""
import pathlib

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
