import json

import pytest
from click.testing import CliRunner
from test_dataset import make_dataset

from cgsgan.cli import main
from cgsgan.data.rebalance import Attributes, Rebalancing, pose_histogram, read_attributes, rebalance


def write_csv(path, rows, header="file,yaw_deg,pitch_deg,smile"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_copies_follow_pose_and_smile():
    rules = Rebalancing()
    assert rules.copies(Attributes(0, 0.0, 0.0, 0.9)) == 1  # smiling frontal: as is
    assert rules.copies(Attributes(1, 5.0, 3.0, 0.1)) == 2  # neutral frontal: one more
    assert rules.copies(Attributes(2, -35.0, 0.0, 0.9)) == 2  # extreme: one more
    assert rules.copies(Attributes(3, 50.0, 0.0, 0.1)) == 3  # steep: extreme + steep
    assert rules.copies(Attributes(4, 20.0, 0.0, 0.1)) == 1  # neither frontal nor extreme
    assert rules.copies(Attributes(5, 5.0, 20.0, 0.1)) == 1  # pitched: not frontal
    off = Rebalancing(extreme_copies=0, steep_copies=0, neutral_copies=0)
    assert all(off.copies(Attributes(i, y, 0.0, 0.0)) == 1 for i, y in enumerate((0, 35, 60)))
    with pytest.raises(ValueError, match="neutral_copies"):
        Rebalancing(neutral_copies=-1)


def test_rebalance_reads_csv_and_sorts_with_repeats(tmp_path):
    csv = write_csv(
        tmp_path / "a.csv", [("00003.png", 50, 0, 0.9), ("00001.png", 0, 0, 0.1), ("00002.png", 20, 0, 0.5)]
    )
    rows = read_attributes(csv)
    assert [r.number for r in rows] == [3, 1, 2]
    assert rebalance(rows) == [1, 1, 2, 3, 3, 3]
    histogram = pose_histogram(rows, rebalance(rows))
    assert "|yaw|   0- 15 deg        2   33.3%" in histogram and "45- 60 deg        3   50.0%" in histogram


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,yaw_deg\n1.png,3\n", "needs a header with columns pitch_deg, smile"),
        ("file,yaw_deg,pitch_deg,smile\nx.png,1,2,3\n", "a.csv:2: no image number in 'x.png'"),
        ("file,yaw_deg,pitch_deg,smile\n1.png,left,2,3\n", "a.csv:2: yaw_deg is 'left', not a number"),
        ("file,yaw_deg,pitch_deg,smile\n1.png,nan,2,3\n", "a.csv:2: yaw_deg is not finite"),
    ],
)
def test_bad_attribute_files_are_named(tmp_path, text, message):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_attributes(tmp_path / "a.csv")


def test_rebalance_command_writes_the_distribution(tmp_path):
    csv = write_csv(tmp_path / "a.csv", [(f"{i:05d}.png", 10 * i, 0, 0.1) for i in range(6)])
    out = tmp_path / "dist.json"
    result = CliRunner().invoke(main, ["dataset", "rebalance", str(csv), "--out", str(out), "--neutral-copies", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == [0, 0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 5]
    assert "before: 6 images" in result.output and "after: 14 entries" in result.output


def test_check_command_lists_problems_and_fails(tmp_path):
    images = make_dataset(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["dataset", "check", str(images)])
    assert ok.exit_code == 0 and "ok: 6 usable images at 16x16" in ok.output
    (images / "00002.png").write_bytes(b"junk")
    (tmp_path / "mask" / "00004.png").unlink()
    bad = runner.invoke(main, ["dataset", "check", str(images)])
    assert bad.exit_code == 1
    assert "00002.png: unreadable" in bad.output and "00004.png: no mask" in bad.output
    assert "2 problem(s)" in bad.output
