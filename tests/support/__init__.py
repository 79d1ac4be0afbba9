"""Helpers the test tiers share: temporary projects, local servers, a fake TorchServe."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
