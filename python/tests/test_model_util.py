import io
import itertools
import logging
import sys
import threading
import time
import tracemalloc
import types

import pytest

from studio import model_util
from studio.model_util import ModelPipe

np = pytest.importorskip("numpy")

# Hang guard for every pipe call: a call that has not returned by then fails
# the test instead of blocking the suite. It is not a speed requirement.
DEADLINE_S = 30.0


def call_with_deadline(function, *args):
    """Run ``function(*args)`` in a thread and return its result.

    Fails the test when the call is still running after DEADLINE_S.
    """
    outcome = {}

    def target():
        try:
            outcome["result"] = function(*args)
        except BaseException as error:  # re-raised in the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "pipe call still running after {} s".format(DEADLINE_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def run_pipe(pipe, data, ordered=False):
    """Apply the pipe under the hang guard, reading a lazy result to the end."""

    def apply():
        result = pipe.apply_ordered(data) if ordered else pipe.apply_unordered(data)
        if isinstance(result, types.GeneratorType):
            return result, list(result)
        return result, result

    return call_with_deadline(apply)


def pipe_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("studio-pipe")]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail a test whose pipe threads do not exit after it."""
    yield
    for thread in pipe_threads():
        thread.join(DEADLINE_S)
    assert pipe_threads() == []


@pytest.fixture
def started_threads(monkeypatch):
    """Record the names of the pipe threads started while the test runs."""
    started = []
    original_start = threading.Thread.start

    def counting_start(thread):
        if thread.name.startswith("studio-pipe"):
            started.append(thread.name)
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    return started


def inline_pipe(function):
    return ModelPipe().add(function)


def threaded_pipe(function):
    return ModelPipe().add(function, num_workers=3)


def batched_pipe(function):
    pipe = ModelPipe()
    pipe.add(lambda values: [function(value) for value in values], batch_size=4)
    return pipe


def two_stage_pipe(function):
    pipe = ModelPipe()
    pipe.add(lambda value: value, num_workers=2)
    pipe.add(function, num_workers=2, timeout=30)
    return pipe


PIPE_FACTORIES = [inline_pipe, threaded_pipe, batched_pipe, two_stage_pipe]
# A raising batch drops all of its items, so per-item error tests skip it.
PER_ITEM_PIPE_FACTORIES = [inline_pipe, threaded_pipe, two_stage_pipe]


def double(value):
    return 2 * value


def double_each(batch):
    return [2 * value for value in batch]


# Input kinds


@pytest.mark.parametrize("make_pipe", PIPE_FACTORIES)
def test_dict_maps_same_keys(make_pipe):
    pipe = make_pipe(double)
    data = {"a": 1, "b": 2, "c": 3}

    result, _ = run_pipe(pipe, data)

    assert result == {"a": 2, "b": 4, "c": 6}


@pytest.mark.parametrize("make_pipe", PIPE_FACTORIES)
def test_list_yields_index_pairs(make_pipe):
    pipe = make_pipe(double)

    unordered, _ = run_pipe(pipe, [5, 6, 7])
    ordered, _ = run_pipe(pipe, [5, 6, 7], ordered=True)

    assert isinstance(unordered, list)
    assert sorted(unordered) == [(0, 10), (1, 12), (2, 14)]
    assert ordered == [(0, 10), (1, 12), (2, 14)]


@pytest.mark.parametrize("make_pipe", PIPE_FACTORIES)
def test_set_yields_set_of_pairs(make_pipe):
    pipe = make_pipe(double)
    data = {3, 4}
    expected = {(index, 2 * value) for index, value in enumerate(data)}

    assert run_pipe(pipe, data)[0] == expected
    assert run_pipe(pipe, data, ordered=True)[0] == expected
    assert run_pipe(pipe, frozenset(data))[0] == frozenset(expected)


@pytest.mark.parametrize("make_pipe", PIPE_FACTORIES)
def test_generator_yields_generator(make_pipe):
    pipe = make_pipe(double)

    result, items = run_pipe(pipe, (value for value in [1, 2, 3]))
    ordered, ordered_items = run_pipe(pipe, (value for value in [1, 2, 3]), ordered=True)

    assert isinstance(result, types.GeneratorType)
    assert sorted(items) == [(0, 2), (1, 4), (2, 6)]
    assert isinstance(ordered, types.GeneratorType)
    assert ordered_items == [(0, 2), (1, 4), (2, 6)]


def test_other_collections():
    pipe = threaded_pipe(double)

    assert run_pipe(pipe, (1, 2), ordered=True)[0] == ((0, 2), (1, 4))
    assert run_pipe(pipe, range(3), ordered=True)[0] == [(0, 0), (1, 2), (2, 4)]


@pytest.mark.parametrize("data", ["text", b"bytes", 42, None])
def test_non_collection_rejected(data):
    with pytest.raises(TypeError, match="ModelPipe expects"):
        threaded_pipe(double)(data)


def test_empty_pipe_returns_values():
    pipe = ModelPipe()

    assert pipe({"a": 1}) == {"a": 1}
    assert list(pipe.apply_ordered(iter([4, 5]))) == [(0, 4), (1, 5)]


def test_unhashable_set_results_rejected():
    pipe = inline_pipe(lambda value: [value])

    with pytest.raises(TypeError, match="must be hashable"):
        pipe({1, 2})


# Order


def make_out_of_order_pipe():
    """Return a pipe whose item 1 reaches the output before item 0.

    Item 0 waits in the first stage until the single worker of the second
    stage has started on item 1, so that worker finishes item 1 first.
    """
    second_stage_saw_item_1 = threading.Event()

    def first(value):
        if value == 0:
            assert second_stage_saw_item_1.wait(DEADLINE_S)
        return value

    def second(value):
        if value == 1:
            second_stage_saw_item_1.set()
        return value * 10

    pipe = ModelPipe()
    pipe.add(first, num_workers=2)
    pipe.add(second, num_workers=1)
    return pipe


def test_unordered_follows_completion():
    result, _ = run_pipe(make_out_of_order_pipe(), [0, 1])

    assert result == [(1, 10), (0, 0)]


def test_ordered_follows_input():
    list_result, _ = run_pipe(make_out_of_order_pipe(), [0, 1], ordered=True)
    dict_result, _ = run_pipe(make_out_of_order_pipe(), {"x": 0, "y": 1}, ordered=True)
    _, generator_items = run_pipe(make_out_of_order_pipe(), iter([0, 1]), ordered=True)

    assert list_result == [(0, 0), (1, 10)]
    assert list(dict_result.items()) == [("x", 0), ("y", 10)]
    assert generator_items == [(0, 0), (1, 10)]


def test_ordered_generator_skips_dropped():
    pipe = threaded_pipe(lambda value: 1 / value)

    _, items = run_pipe(pipe, iter([1, 0, 2, 0, 4]), ordered=True)

    assert items == [(0, 1.0), (2, 0.5), (4, 0.25)]
    assert pipe.dropped == 2


def test_ordered_generator_bounds_backlog():
    """A stuck first item stops the reading of input at the reorder window."""
    pulled = []
    window = {}

    def numbers():
        for value in itertools.count():
            pulled.append(value)
            yield value

    def hold_first(value):
        if value == 0:
            # The feeder fills the window while item 0 waits here, then
            # gets a moment to read past it if the window did not hold.
            give_up = time.monotonic() + DEADLINE_S
            while len(pulled) < window["size"] and time.monotonic() < give_up:
                time.sleep(0.01)
            time.sleep(0.2)
            window["pulled_while_held"] = len(pulled)
        return value

    pipe = ModelPipe().add(hold_first, num_workers=2)
    result = pipe.apply_ordered(numbers())
    window["size"] = pipe._last_run.window_size

    first_items = call_with_deadline(lambda: list(itertools.islice(result, 3)))
    result.close()

    assert first_items == [(0, 0), (1, 1), (2, 2)]
    assert window["pulled_while_held"] == window["size"]


# Errors


@pytest.mark.parametrize("make_pipe", PER_ITEM_PIPE_FACTORIES)
def test_raising_items_dropped_and_counted(make_pipe):
    pipe = make_pipe(lambda value: 10 // value)

    result, _ = run_pipe(pipe, {"a": 1, "b": 0, "c": 5, "d": 0})

    assert result == {"a": 10, "c": 2}
    assert pipe.dropped == 2
    assert pipe.errors == {"ZeroDivisionError": 2}


def test_error_kinds_counted_separately():
    def check(value):
        if value < 0:
            raise ValueError("negative: {}".format(value))
        return 1 / value

    pipe = threaded_pipe(check)

    result, _ = run_pipe(pipe, [1, -1, 0, -2, 0, 0, 4], ordered=True)

    assert result == [(0, 1.0), (6, 0.25)]
    assert pipe.errors == {"ValueError": 2, "ZeroDivisionError": 3}
    assert pipe.dropped == 5


def test_errors_reset_per_call():
    pipe = threaded_pipe(lambda value: 1 / value)

    run_pipe(pipe, [0, 0])
    run_pipe(pipe, [1, 2])

    assert pipe.errors == {}
    assert pipe.dropped == 0


def test_errors_logged_once_per_kind(caplog):
    pipe = threaded_pipe(lambda value: 1 / value)

    with caplog.at_level(logging.WARNING, logger="studio.model_util"):
        run_pipe(pipe, [0] * 50 + [1])

    records = [record for record in caplog.records if record.name == "studio.model_util"]
    assert len(records) == 1
    assert "50 item(s)" in records[0].getMessage()
    assert "ZeroDivisionError" in records[0].getMessage()


def test_composed_function_error_counted():
    pipe = ModelPipe()
    pipe.add(double, num_workers=2)
    pipe.add(lambda value: {"2": "two"}[str(value)])

    result, _ = run_pipe(pipe, [1, 2], ordered=True)

    assert result == [(0, "two")]
    assert pipe.errors == {"KeyError": 1}


def test_input_error_raised_after_results():
    def broken_input():
        yield 1
        yield 2
        raise OSError("input stream failed")

    pipe = threaded_pipe(double)
    result = pipe(broken_input())

    received = []

    def consume():
        with pytest.raises(OSError, match="input stream failed"):
            for item in result:
                received.append(item)

    call_with_deadline(consume)
    assert sorted(received) == [(0, 2), (1, 4)]


def test_inline_input_error_raised():
    def broken_input():
        yield 1
        raise OSError("input stream failed")

    with pytest.raises(OSError, match="input stream failed"):
        list(inline_pipe(double)(broken_input()))


# Filters


def test_filter_removes_before_stage():
    seen = []

    def record(value):
        seen.append(value)
        return value

    pipe = ModelPipe().add(record, num_workers=2, filterf=lambda value: value % 2 == 0)

    result, _ = run_pipe(pipe, list(range(6)), ordered=True)

    assert result == [(0, 0), (2, 2), (4, 4)]
    assert sorted(seen) == [0, 2, 4]
    assert pipe.filtered == 3
    assert pipe.dropped == 0
    assert pipe.errors == {}


def test_raising_filter_counts_error():
    pipe = ModelPipe().add(double, num_workers=2, filterf=lambda value: 1 / value)

    result, _ = run_pipe(pipe, [0, 1], ordered=True)

    assert result == [(1, 2)]
    assert pipe.errors == {"ZeroDivisionError": 1}


def test_filter_in_ordered_generator():
    pipe = ModelPipe().add(double_each, batch_size=3, filterf=lambda value: value != 2)

    _, items = run_pipe(pipe, iter(range(5)), ordered=True)

    assert items == [(0, 0), (1, 2), (3, 6), (4, 8)]


# Batching


def test_batches_never_exceed_size():
    batch_sizes = []
    all_items_queued = threading.Event()

    def numbers():
        yield from range(10)
        all_items_queued.set()

    def sum_rows(batch):
        if not batch_sizes:
            # Hold the first batch until every item waits in the queue, so
            # that the next batches are full.
            assert all_items_queued.wait(DEADLINE_S)
        batch_sizes.append(len(batch))
        return [value * 3 for value in batch]

    pipe = ModelPipe().add(sum_rows, batch_size=4)

    _, items = run_pipe(pipe, numbers(), ordered=True)

    assert items == [(index, index * 3) for index in range(10)]
    assert sum(batch_sizes) == 10
    assert max(batch_sizes) == 4
    assert len(batch_sizes) <= 4


def test_vstack_batcher_and_composed_argmax():
    received_shapes = []

    def model(batch):
        received_shapes.append(batch.shape)
        return batch * 2

    def argmax_rows(scores):
        assert scores.ndim == 2
        return np.argmax(scores, axis=1)

    pipe = ModelPipe()
    pipe.add(model, batch_size=8, batcher=np.vstack)
    pipe.add(argmax_rows)
    rows = {name: np.eye(3)[[position]] for position, name in enumerate("abc")}

    result, _ = run_pipe(pipe, rows)

    assert result == {"a": 0, "b": 1, "c": 2}
    assert all(len(shape) == 2 and shape[1] == 3 for shape in received_shapes)
    assert sum(shape[0] for shape in received_shapes) == 3


def test_raising_batch_drops_its_items():
    def fail_on_seven(batch):
        if 7 in batch:
            raise RuntimeError("bad batch")
        return batch

    pipe = ModelPipe().add(fail_on_seven, batch_size=5, batcher=list)
    data = list(range(10))

    result, _ = run_pipe(pipe, data)

    lost = set(data) - {value for _, value in result}
    assert 7 in lost
    assert pipe.dropped == len(lost)
    assert pipe.errors == {"RuntimeError": len(lost)}


def test_wrong_batch_result_length_counted():
    pipe = ModelPipe().add(lambda batch: batch[:1], batch_size=3)

    result, _ = run_pipe(pipe, [1, 2, 3, 4, 5, 6])

    assert pipe.errors.get("ValueError", 0) + len(result) == 6
    assert pipe.dropped == pipe.errors.get("ValueError", 0)


def test_batcher_alone_makes_batches_of_one():
    pipe = ModelPipe().add(lambda batch: [len(batch)], batcher=list)

    result, _ = run_pipe(pipe, ["x", "y"], ordered=True)

    assert result == [(0, 1), (1, 1)]


# Composition and threads


def test_composed_stages_start_no_threads(started_threads):
    caller = threading.get_ident()
    seen_threads = set()

    def record(value):
        seen_threads.add(threading.get_ident())
        return value + 1

    pipe = ModelPipe().add(record).add(record).add(record)

    assert pipe(list(range(5))) == [(index, index + 3) for index in range(5)]
    assert list(pipe(iter(range(2)))) == [(0, 3), (1, 4)]
    assert started_threads == []
    assert seen_threads == {caller}


def test_composed_after_stage_share_its_threads(started_threads):
    stage_threads = {}
    composed_threads = {}

    def stage(value):
        stage_threads[value] = threading.get_ident()
        return value

    def composed(value):
        composed_threads[value] = threading.get_ident()
        return value

    pipe = ModelPipe().add(stage, num_workers=2)
    for _ in range(5):
        pipe.add(composed)

    run_pipe(pipe, list(range(20)))

    # One feeder and two workers; the five composed functions add none.
    assert len(started_threads) == 3
    assert sum(name.startswith("studio-pipe-stage1-worker") for name in started_threads) == 2
    assert composed_threads == stage_threads
    assert threading.get_ident() not in set(stage_threads.values())


def test_leading_composed_run_in_feeder():
    threads_by_function = {"leading": set(), "stage": set()}

    def leading(value):
        threads_by_function["leading"].add(threading.current_thread().name)
        return value

    def stage(value):
        threads_by_function["stage"].add(threading.current_thread().name)
        return value

    pipe = ModelPipe().add(leading).add(stage, num_workers=2)

    run_pipe(pipe, list(range(10)))

    assert threads_by_function["leading"] == {"studio-pipe-feeder"}
    assert threads_by_function["stage"] <= {
        "studio-pipe-stage1-worker1",
        "studio-pipe-stage1-worker2",
    }


def test_later_add_leaves_running_call_alone():
    pipe = ModelPipe().add(double, num_workers=2)
    result = pipe(iter([1, 2]))

    pipe.add(double)

    assert sorted(call_with_deadline(list, result)) == [(0, 2), (1, 4)]
    assert sorted(run_pipe(pipe, [1, 2])[0]) == [(0, 4), (1, 8)]


# Laziness and memory


@pytest.mark.parametrize("ordered", [False, True])
def test_generator_pulled_incrementally(ordered):
    pulled = []

    def ten_million():
        for value in range(10**7):
            pulled.append(value)
            yield value

    pipe = ModelPipe().add(double, num_workers=2).add(double_each, batch_size=8)
    result = pipe.apply_ordered(ten_million()) if ordered else pipe(ten_million())

    first_items = call_with_deadline(lambda: list(itertools.islice(result, 1000)))
    result.close()

    assert len(first_items) == 1000
    # Beyond the returned items, the pipe reads only what its queues and
    # reorder window can take, and their sizes do not depend on the input.
    assert len(pulled) <= 1000 + pipe._last_run.window_size
    assert len(pulled) < 10**5


def test_generator_memory_bounded():
    count = 50_000
    pipe = ModelPipe().add(double, num_workers=2)

    def consume():
        total = 0
        for _, value in pipe((value for value in range(count))):
            total += value
        return total

    tracemalloc.start()
    try:
        total = call_with_deadline(consume)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == count * (count - 1)
    # Collecting the 50,000 result pairs in a list peaks at about 6 MB.
    assert peak_bytes < 1_000_000


# End of input and timeouts


@pytest.mark.parametrize("make_pipe", PIPE_FACTORIES)
@pytest.mark.parametrize("ordered", [False, True])
def test_empty_input_returns(make_pipe, ordered):
    pipe = make_pipe(double)

    assert run_pipe(pipe, [], ordered)[0] == []
    assert run_pipe(pipe, {}, ordered)[0] == {}
    assert run_pipe(pipe, set(), ordered)[0] == set()
    assert run_pipe(pipe, iter([]), ordered)[1] == []


@pytest.mark.parametrize("ordered", [False, True])
def test_all_items_dropped_returns(ordered):
    pipe = two_stage_pipe(lambda value: 1 / 0)

    assert run_pipe(pipe, iter(range(100)), ordered)[1] == []
    assert pipe.dropped == 100


def test_long_timeout_not_waited_at_end():
    # Hitting the deadline here would mean the end was found by waiting.
    pipe = ModelPipe().add(double, num_workers=4, timeout=3600).add(
        double_each, batch_size=16, timeout=3600
    )

    result, _ = run_pipe(pipe, list(range(100)))

    assert len(result) == 100
    assert not pipe.timed_out


def test_stalled_input_stops_run(caplog):
    gate = threading.Event()

    def stalling_input():
        yield from (1, 2, 3)
        gate.wait(DEADLINE_S)
        yield 4

    pipe = ModelPipe().add(double, num_workers=2, timeout=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="studio.model_util"):
            _, items = run_pipe(pipe, stalling_input())
    finally:
        gate.set()

    assert sorted(items) == [(0, 2), (1, 4), (2, 6)]
    assert pipe.timed_out
    assert pipe.errors == {}
    assert "stopped early" in caplog.text


def test_stall_counts_unfinished_items():
    gate = threading.Event()
    release = threading.Event()

    def stalling_input():
        yield from (0, 1, 2)
        gate.wait(DEADLINE_S)

    def hold_third(value):
        if value == 4:
            release.wait(DEADLINE_S)
        return value

    pipe = ModelPipe()
    pipe.add(double, num_workers=1, timeout=0.2)
    pipe.add(hold_third, num_workers=1)
    try:
        _, items = run_pipe(pipe, stalling_input())
    finally:
        gate.set()
        release.set()

    assert sorted(items) == [(0, 0), (1, 2)]
    assert pipe.timed_out
    assert pipe.errors == {"StageTimeoutError": 1}
    assert pipe.dropped == 1


def test_closing_lazy_result_stops_threads():
    pipe = ModelPipe().add(double, num_workers=4)
    result = pipe(itertools.count())

    assert call_with_deadline(next, result) is not None
    result.close()
    # The autouse fixture checks that the workers exit.


# Options and models


@pytest.mark.parametrize(
    "options, error",
    [
        ({"num_workers": 0}, ValueError),
        ({"num_workers": 1.5}, ValueError),
        ({"batch_size": -1}, ValueError),
        ({"batch_size": True}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "5"}, ValueError),
        ({"batcher": "vstack"}, TypeError),
        ({"filterf": 3}, TypeError),
    ],
)
def test_invalid_options_rejected(options, error):
    with pytest.raises(error):
        ModelPipe().add(double, **options)


def test_non_callable_stage_rejected():
    with pytest.raises(TypeError, match="expects a function"):
        ModelPipe().add(42)


class FakeKerasModel:
    input_shape = (None, 4, 5, 3)

    def __init__(self):
        self.verbose_values = []
        self.predict_function_built = 0

    def _make_predict_function(self):
        self.predict_function_built += 1

    def predict(self, batch, verbose="auto"):
        self.verbose_values.append(verbose)
        return batch.reshape(len(batch), -1).sum(axis=1)


def test_keras_style_model_uses_predict():
    model = FakeKerasModel()
    pipe = ModelPipe().add(model, batch_size=4, batcher=np.vstack)
    data = [np.full((1, 2), value, dtype=float) for value in range(6)]

    result, _ = run_pipe(pipe, data, ordered=True)

    assert result == [(index, 2.0 * index) for index in range(6)]
    assert model.predict_function_built == 1
    assert set(model.verbose_values) == {0}


class FakeTorchModule:
    def __init__(self, training):
        self.training = training
        self.batches = []

    def parameters(self):
        return iter(())

    def forward(self, batch):
        self.batches.append(batch)
        return batch + 1

    def __call__(self, batch):
        return self.forward(batch)


def test_torch_style_module_called_on_batch(caplog, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    module = FakeTorchModule(training=True)

    with caplog.at_level(logging.WARNING, logger="studio.model_util"):
        pipe = ModelPipe().add(module, batch_size=10, batcher=np.vstack)
    result, _ = run_pipe(pipe, [np.array([[1.0]]), np.array([[2.0]])], ordered=True)

    assert [(index, float(value[0])) for index, value in result] == [(0, 2.0), (1, 3.0)]
    assert all(isinstance(batch, np.ndarray) for batch in module.batches)
    assert "training mode" in caplog.text


def test_real_torch_module():
    torch = pytest.importorskip("torch")
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.bias.fill_(0.5)
    module.eval()
    pipe = ModelPipe().add(module, batch_size=4, batcher=np.vstack)
    data = [np.array([[value, value]], dtype=np.float64) for value in range(5)]

    result, _ = run_pipe(pipe, data, ordered=True)

    assert [round(float(value[0]), 3) for _, value in result] == [
        2.0 * value + 0.5 for value in range(5)
    ]
    assert isinstance(result[0][1], np.ndarray)


# Image resizing


@pytest.fixture
def image_module():
    return pytest.importorskip("PIL.Image")


def test_resize_for_keras_model(image_module):
    image = image_module.new("RGB", (20, 10), color=(255, 0, 51))

    array = model_util.resize_to_model_input(FakeKerasModel())(image)

    assert array.shape == (1, 4, 5, 3)
    assert array.dtype == np.float32
    assert np.allclose(array[0, 0, 0], [1.0, 0.0, 0.2])


def test_resize_channels_first(image_module):
    class ChannelsFirstModel:
        input_shape = [(None, 1, 6, 8), (None, 10)]

    image = image_module.new("RGB", (3, 3), color=(255, 255, 255))

    array = model_util.resize_to_model_input(ChannelsFirstModel())(image)

    assert array.shape == (1, 1, 6, 8)
    assert np.allclose(array, 1.0)


def test_resize_plain_shapes(image_module):
    gray = image_module.new("L", (7, 7), color=0)
    buffer = io.BytesIO()
    image_module.new("RGBA", (9, 9)).save(buffer, format="PNG")

    assert model_util.resize_to_shape((2, 3, 1))(gray).shape == (1, 2, 3, 1)
    assert model_util.resize_to_shape((2, 3))(gray).shape == (1, 2, 3)
    assert model_util.resize_to_model_input((4, 4, 4))(buffer.getvalue()).shape == (1, 4, 4, 4)
    pixels = np.zeros((5, 5, 3), dtype=np.uint8)
    assert model_util.resize_to_shape((2, 2, 3))(pixels).shape == (1, 2, 2, 3)


def test_resize_rejects_bad_input(image_module):
    with pytest.raises(ValueError, match="expected an image shape"):
        model_util.resize_to_shape((None, 4, 3))
    with pytest.raises(ValueError, match="channels"):
        model_util.resize_to_shape((4, 4, 2))
    with pytest.raises(TypeError, match="no input_shape"):
        model_util.resize_to_model_input(object())
    with pytest.raises(TypeError, match="expected a PIL image"):
        model_util.resize_to_shape((4, 4, 3))("not an image")


def test_resize_without_pillow(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)

    with pytest.raises(ImportError, match="pip install pillow"):
        model_util.resize_to_shape((4, 4, 3))
