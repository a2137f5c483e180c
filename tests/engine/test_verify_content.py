"""`python -m engine verify` on a re-sealed bundle: a member's bytes replaced and its digest, size, index.json
and _passed.flag recomputed (all digests agree). The receipt verify parses and the parquet members it relies on
are checked for content: one coded E3A_VER_001 line naming the member, exit 2, never a traceback or a PASS."""

import hashlib
import io
import json
import shutil

import pandas as pd
import pytest

from engine.publish.serialize import json_bytes
from engine.states.s7_bundle import passed_flag
from tests.engine.conftest import ROOT, engine_here

TAMPERED = "E3A_VER_001_BUNDLE_TAMPERED"


def _cli(*args, program: bool = False):
    """``python -m engine args``: the run and one refusal as programs, the other refusals in process."""
    proc = engine_here(ROOT, *args, program=program)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rc, _, err = _cli("run", "--seed", "42", "--run-root", str(root), "--policies", str(ROOT / "policies"), program=True)
    assert rc == 0, err
    (only,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return only


def _reseal(run_dir, tmp_path, lid, new: bytes, fix_receipt_digest=False, index_edit=None):
    """A copy of the run with member ``lid`` replaced by ``new`` and everything that digests it recomputed."""
    copy = tmp_path / run_dir.name   # runs/<run_id>: verify checks the folder is named by the run it holds
    shutil.copytree(run_dir, copy, symlinks=True)
    index_path = next(copy.glob("data/validation/manifest_fingerprint=*/index.json"))
    index = json.loads(index_path.read_bytes())
    (member,) = [m for m in index["members"] if m["logical_id"] == lid]
    (copy / member["path"]).write_bytes(new)
    member["sha256_hex"], member["size_bytes"] = hashlib.sha256(new).hexdigest(), len(new)
    if fix_receipt_digest:
        index["s6_receipt_digest"] = hashlib.sha256(json_bytes(json.loads(new))).hexdigest()
    if index_edit:
        index_edit(index)
    index_path.write_bytes(json_bytes(index))
    (index_path.parent / "_passed.flag").write_text(passed_flag(index))
    return copy, member["path"]


def _member_bytes(run_dir, lid):
    index = json.loads(next(run_dir.glob("data/validation/*/index.json")).read_bytes())
    (member,) = [m for m in index["members"] if m["logical_id"] == lid]
    return (run_dir / member["path"]).read_bytes()


def _assert_refused(rc, out, err, *words):
    assert rc == 2, (out, err)
    assert "Traceback" not in err and "PASS" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{TAMPERED}: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_resealing_a_member_with_its_own_bytes_still_verifies(run_dir, tmp_path):
    """The control: the re-seal itself is sound, so the refusals below are the content's."""
    for lid in ("s6_receipt_3A", "zone_alloc"):
        copy, _ = _reseal(run_dir, tmp_path / lid, lid, _member_bytes(run_dir, lid))
        rc, out, err = _cli("verify", str(copy))
        assert rc == 0 and out.startswith("PASS 14 members"), err


@pytest.mark.parametrize("new, fix, cause", [
    (b"not json\n", False, "unreadable JSON"),
    (b"\xff\xfe{}\n", False, "unreadable JSON"),
    (b"[]\n", True, "not a JSON object (a list)"),
    (b"\"PASS\"\n", True, "not a JSON object (a str)"),
])
def test_a_resealed_receipt_that_is_not_a_json_object_is_a_coded_refusal(run_dir, tmp_path, new, fix, cause):
    copy, rel = _reseal(run_dir, tmp_path, "s6_receipt_3A", new, fix_receipt_digest=fix)
    _assert_refused(*_cli("verify", str(copy)), "s6_receipt_3A", rel, cause)


def test_a_resealed_index_without_the_receipt_digest_is_a_coded_refusal(run_dir, tmp_path):
    lid = "s6_receipt_3A"
    copy, _ = _reseal(run_dir, tmp_path, lid, _member_bytes(run_dir, lid),
                      index_edit=lambda index: index.pop("s6_receipt_digest"))
    _assert_refused(*_cli("verify", str(copy), program=True), "s6 receipt digest mismatch")


@pytest.mark.parametrize("lid", ["zone_alloc", "s1_escalation_queue", "s2_country_zone_priors", "s3_zone_shares",
                                 "s4_zone_counts", "s6_issue_table_3A"])
def test_a_resealed_parquet_member_that_is_not_parquet_is_refused(run_dir, tmp_path, lid):
    copy, rel = _reseal(run_dir, tmp_path, lid, b"garbage\n")
    _assert_refused(*_cli("verify", str(copy)), lid, rel, "not a readable parquet file")


@pytest.mark.parametrize("edit", [
    lambda f: f.drop(columns=["zone_site_count"]),
    lambda f: f.rename(columns={"tzid": "tz"}),
    lambda f: f[list(reversed(f.columns))],
    lambda f: f.assign(extra=1),
], ids=["dropped", "renamed", "reordered", "extra"])
def test_a_resealed_zone_alloc_without_its_schema_columns_is_refused(run_dir, tmp_path, edit):
    frame = pd.read_parquet(io.BytesIO(_member_bytes(run_dir, "zone_alloc")))
    sink = io.BytesIO()
    edit(frame).to_parquet(sink, index=False)
    copy, rel = _reseal(run_dir, tmp_path, "zone_alloc", sink.getvalue())
    _assert_refused(*_cli("verify", str(copy)), "zone_alloc", rel, "are not its schema's")


def _table(run_dir, lid):
    return pd.read_parquet(io.BytesIO(_member_bytes(run_dir, lid)))


def _parquet(frame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


def _one_escalated_pair(frame):
    """The rows of the first pair with two zones or more holding outlets (a count to move, or to add to)."""
    held = frame[frame["zone_site_count"] > 0]
    pair = held.groupby(["merchant_id", "legal_country_iso"]).size().loc[lambda n: n >= 2].index[0]
    return frame.index[(frame["merchant_id"] == pair[0]) & (frame["legal_country_iso"] == pair[1])
                       & (frame["zone_site_count"] > 0)]


def test_a_resealed_s4_that_breaks_count_conservation_is_refused_by_s6_run_again(run_dir, tmp_path):
    """One outlet added to a zone of S4, everything re-sealed (digests, index, flag agree): S6 run again on the
    files finds the pair's counts no longer sum to its site count."""
    s4 = _table(run_dir, "s4_zone_counts")
    row = _one_escalated_pair(s4)[0]
    s4.loc[row, "zone_site_count"] += 1
    copy, _ = _reseal(run_dir, tmp_path, "s4_zone_counts", _parquet(s4))
    _assert_refused(*_cli("verify", str(copy), program=True), "fail S6 again", "CHK_S4_COUNT_CONSERVATION (1)")


def test_a_resealed_zone_alloc_with_an_outlet_moved_between_zones_is_refused(run_dir, tmp_path):
    """An outlet moved from one zone to another of the same pair: its total still conserves, but zone_alloc no longer
    carries S4's counts (and its routing hash no longer recomputes)."""
    za = _table(run_dir, "zone_alloc")
    a, b = _one_escalated_pair(za)[:2]
    za.loc[a, "zone_site_count"] -= 1
    za.loc[b, "zone_site_count"] += 1
    copy, _ = _reseal(run_dir, tmp_path, "zone_alloc", _parquet(za))
    _assert_refused(*_cli("verify", str(copy)), "fail S6 again", "CHK_S5_ZONE_ALLOC_COUNTS (2)")


def test_a_resealed_s3_whose_shares_do_not_sum_to_one_is_refused(run_dir, tmp_path):
    s3 = _table(run_dir, "s3_zone_shares")
    s3.loc[0, "share_drawn"] = s3.loc[0, "share_drawn"] + 0.25
    copy, _ = _reseal(run_dir, tmp_path, "s3_zone_shares", _parquet(s3))
    _assert_refused(*_cli("verify", str(copy)), "fail S6 again", "CHK_S3_SHARE_SUM (1)")


def test_a_resealed_escalation_queue_that_drops_a_pair_is_refused(run_dir, tmp_path):
    """An escalated pair taken out of S1: its zones in S3, S4 and zone_alloc are now outside the domain."""
    s1 = _table(run_dir, "s1_escalation_queue")
    drop = s1.index[s1["is_escalated"]][0]
    copy, _ = _reseal(run_dir, tmp_path, "s1_escalation_queue", _parquet(s1.drop(index=drop)))
    _assert_refused(*_cli("verify", str(copy)), "fail S6 again", "CHK_S3_DOMAIN_ALIGNMENT")


def test_a_resealed_s3_with_a_negative_share_that_still_sums_to_one_is_refused(run_dir, tmp_path):
    """S6 checks that a pair's shares sum to one; a re-sealed edit can keep that sum with a share below 0 and one
    above 1, which the engine never writes: verify's value checks name it."""
    s3 = _table(run_dir, "s3_zone_shares")
    pair = s3.groupby(["merchant_id", "legal_country_iso"]).size().loc[lambda n: n >= 2].index[0]
    rows = s3.index[(s3["merchant_id"] == pair[0]) & (s3["legal_country_iso"] == pair[1])]
    a, b = rows[:2]
    s3.loc[b, "share_drawn"] = s3.loc[b, "share_drawn"] - 0.5 - s3.loc[b, "share_drawn"]   # -0.5
    s3.loc[a, "share_drawn"] = 1.0 - s3.loc[rows.drop(a), "share_drawn"].sum()            # the sum kept at 1
    copy, _ = _reseal(run_dir, tmp_path, "s3_zone_shares", _parquet(s3))
    _assert_refused(*_cli("verify", str(copy)), "values the engine never writes", "S3 share outside [0, 1]")


def test_a_trace_total_that_is_not_a_number_is_a_coded_refusal(run_dir, tmp_path):
    lid = "rng_trace_log"
    lines = _member_bytes(run_dir, lid).decode().splitlines()
    lines[-1] = lines[-1].replace('"events_total":', '"events_total":Infinity,"x":', 1)
    copy, _ = _reseal(run_dir, tmp_path, lid, ("\n".join(lines) + "\n").encode())
    _assert_refused(*_cli("verify", str(copy)), "do not read")


@pytest.mark.parametrize("lid, column, to, named", [
    ("s3_zone_shares", "share_drawn", str, "share_drawn is large_string, not double"),
    ("s1_escalation_queue", "merchant_id", str, "merchant_id is large_string, not uint64"),
    ("s4_zone_counts", "merchant_id", float, "merchant_id is double, not uint64"),
    ("s4_zone_counts", "zone_site_count", float, "zone_site_count is double, not int64")])
def test_a_resealed_column_of_another_type_is_refused_naming_it(run_dir, tmp_path, lid, column, to, named):
    """The same values in another type (text, floats): S6's sums and joins would coerce them and pass; the type
    of every column verify reads is the engine's, or the member is tampered."""
    table = _table(run_dir, lid)
    table[column] = table[column].astype(to)
    copy, _ = _reseal(run_dir, tmp_path, lid, _parquet(table))
    _assert_refused(*_cli("verify", str(copy)), f"member {lid}: column {named}")


def test_rng_events_that_are_not_utf8_are_refused(run_dir, tmp_path):
    """A byte that is not UTF-8 inside an event's country code: Arrow cannot read the text S6 needs."""
    lid = "rng_event_zone_dirichlet"
    data = _member_bytes(run_dir, lid)
    at = data.index(b'"country_iso":"') + len(b'"country_iso":"')
    copy, _ = _reseal(run_dir, tmp_path, lid, data[:at] + b"\xff" + data[at + 1:])
    _assert_refused(*_cli("verify", str(copy)), "S6 cannot run on the bundle's tables")
