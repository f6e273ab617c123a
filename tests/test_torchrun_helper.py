"""The multi-process tests' launcher (tests/torchrun.py) must show why a rank died: the line a
killed rank wrote last, not only torchrun's summary, which CI's excerpt cut (stop 25)."""
import pytest

from torchrun import RankFailed, RankKilled, torchrun

ABORTS = "import os, torch.distributed as dist\ndist.init_process_group('gloo')\n" \
         "if dist.get_rank() == 1:\n    os.abort()\ndist.barrier()\n"
RAISES = "import torch.distributed as dist\ndist.init_process_group('gloo')\n" \
         "if dist.get_rank() == 1:\n    raise ValueError('rank one found a bad shard')\ndist.barrier()\n"


@pytest.mark.slow
def test_an_aborted_rank_is_told_apart_and_its_stack_shown(tmp_path):
    script = tmp_path / "aborts.py"
    script.write_text(ABORTS)
    with pytest.raises(RankKilled) as killed:
        torchrun(script, [], nproc=2, port_offset=11)
    message = str(killed.value)
    assert "SIGABRT" in message
    assert message.rindex("Fatal Python error: Aborted") > message.index("the ranks' last lines")


@pytest.mark.slow
def test_a_rank_that_raised_fails_at_once_with_its_error(tmp_path):
    script = tmp_path / "raises.py"
    script.write_text(RAISES)
    with pytest.raises(RankFailed) as failed:
        torchrun(script, [], nproc=2, port_offset=13)
    assert not isinstance(failed.value, RankKilled)
    assert "ValueError: rank one found a bad shard" in str(failed.value).split("the ranks' last lines")[1]
