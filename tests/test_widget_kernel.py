"""The augmentation inspector in a live kernel, driven over the Jupyter protocol the way
JupyterLab drives it: the kernel opens one comm per widget, the front end sends a state
update for the slider, and the kernel answers with the new HTML of the view."""
import queue
import sys
import time

import jupyter_client
import pytest


SETUP = """
from knowfree.data.sample import Sample, Span
from knowfree.viz import inspector
a = Sample(list("张三在北京"), [Span(0, 2, "PER.NAM")], id="a")
b = Sample(list("李四去上海"), [Span(0, 2, "PER.NAM")], id="b")
display(inspector([{"sample": a, "synthetic": [], "answers": {}},
                   {"sample": b, "synthetic": [], "answers": {}}]))
"""


def _drain(kc, until, timeout=60.0):
    """iopub messages until ``until(msg)`` is true for one of them (which is returned last)."""
    seen, end = [], time.time() + timeout
    while time.time() < end:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        seen.append(msg)
        if until(msg):
            return seen
    raise AssertionError(f"no expected message within {timeout} s; got "
                         f"{[m['msg_type'] for m in seen]}")


@pytest.fixture
def kernel():
    km = jupyter_client.KernelManager(kernel_cmd=[sys.executable, "-m", "ipykernel_launcher",
                                                  "-f", "{connection_file}"])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_slider_update_from_the_front_end_rerenders_the_view(kernel):
    kc = kernel
    msg_id = kc.execute(SETUP)
    seen = _drain(kc, lambda m: m["parent_header"].get("msg_id") == msg_id
                  and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle")
    errors = [m["content"] for m in seen if m["msg_type"] == "error"]
    assert not errors, errors
    opened = {m["content"]["comm_id"]: m["content"]["data"]["state"]
              for m in seen if m["msg_type"] == "comm_open"}
    slider = next(cid for cid, st in opened.items() if st.get("_model_name") == "IntSliderModel")
    # the view's state: opened empty, then filled with the first sentence by an update
    values = {cid: st.get("value", "") for cid, st in opened.items()
              if st.get("_model_name") == "HTMLModel"}
    for m in seen:
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in values:
            values[m["content"]["comm_id"]] = m["content"]["data"]["state"].get(
                "value", values[m["content"]["comm_id"]])
    html = next(cid for cid, v in values.items() if "张" in v)
    assert any(m["msg_type"] == "display_data" for m in seen)

    # what the front end sends when the user moves the slider to the second sentence
    kc.shell_channel.send(kc.session.msg("comm_msg", {
        "comm_id": slider, "data": {"method": "update", "state": {"value": 1}, "buffer_paths": []}}))

    def view_update(m):
        c = m["content"]
        return (m["msg_type"] == "comm_msg" and c.get("comm_id") == html
                and "value" in c["data"].get("state", {}))

    update = _drain(kc, view_update)[-1]["content"]["data"]["state"]["value"]
    assert "李" in update and "张" not in update
