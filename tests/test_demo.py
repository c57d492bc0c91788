"""The demo's report: the table and the AP-against-latency plot."""

from PIL import Image

from kdod import demo


def test_report_has_the_table_and_the_plot(tmp_path):
    rows = [{"model": "teacher", "AP": 0.61, "AP50": 0.93, "parameters": 2_000_000,
             "latency_ms": 20.0, "train_minutes": 6.0},
            {"model": "student alone", "AP": 0.40, "AP50": 0.80, "parameters": 500_000,
             "latency_ms": 8.0, "train_minutes": 2.0}]
    demo.write_report(rows, tmp_path)
    table = (tmp_path / "report.md").read_text()
    assert "| teacher | 0.610 | 0.930 | 2,000,000 | 20.0 | 6.0 |" in table
    assert "| student alone | 0.400 | 0.800 | 500,000 | 8.0 | 2.0 |" in table
    with Image.open(tmp_path / "report.png") as plot:
        assert plot.width > 300 and plot.height > 200
