"""Threaded pipelines that run preprocessing and a model over a collection.

A :class:`ModelPipe` is a chain of stages built with :meth:`ModelPipe.add`.
A typical pipe fetches URLs with many threads, decodes and resizes the images,
and runs a model on batches::

    pipe = ModelPipe()
    pipe.add(lambda url: urllib.request.urlopen(url, timeout=10).read(),
             num_workers=32)
    pipe.add(lambda data: PIL.Image.open(io.BytesIO(data)))
    pipe.add(resize_to_model_input(model))
    pipe.add(model, num_workers=1, batch_size=128, batcher=np.vstack)
    pipe.add(lambda probabilities: np.argmax(probabilities, axis=1))
    labels = pipe({url: url for url in urls})

An item whose stage raises is dropped from the result and counted in
:attr:`ModelPipe.errors`, so one broken URL does not stop the other items.
Only the standard library is required. numpy and Pillow are used by
:func:`resize_to_model_input`, and Keras or PyTorch models are recognized by
their methods without importing either library.
"""

import collections
import functools
import inspect
import io
import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping

try:
    import numpy as np
except ImportError:
    np = None

__all__ = [
    "ModelPipe",
    "StageTimeoutError",
    "resize_to_model_input",
    "resize_to_shape",
]

logger = logging.getLogger(__name__)

# Interval in seconds at which a blocked queue operation rechecks whether the
# run was cancelled. It delays only cancellation, never the delivery of items.
_POLL_INTERVAL_S = 0.05

# Queue sizes are this many times the items that a stage's workers hold at once.
_QUEUE_SIZE_FACTOR = 2
_MIN_QUEUE_SIZE = 16


class StageTimeoutError(TimeoutError):
    """Error recorded when a stage receives no item within its ``timeout``.

    It stops the run early, and the run's unfinished items are counted
    under this name in :attr:`ModelPipe.errors`.
    """


class _Marker:
    """Control message that travels through a run's queues next to the items."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<{}>".format(self.name)


# End-of-input marker. Each worker of a stage receives one, and so does the
# collector after the last stage.
_END = _Marker("end of input")
# Returned by a wait that was interrupted because the run was cancelled.
_CANCELLED = _Marker("cancelled")
# First element of (_SKIPPED, seq) messages that tell the collector of an
# ordered lazy run that item seq was dropped or filtered.
_SKIPPED = _Marker("skipped")


class ModelPipe:
    """Pipeline of functions applied to every item of a collection.

    Stages are added with :meth:`add` and run by calling the pipe, or
    :meth:`apply_unordered` and :meth:`apply_ordered`. After a call,
    :attr:`errors`, :attr:`dropped` and :attr:`filtered` describe that call.
    A pipe can be called many times, also from several threads, but then
    these attributes describe the call that started last.
    """

    def __init__(self):
        self._stages = []
        self._last_run = None

    def add(
        self,
        func,
        num_workers=None,
        batch_size=None,
        batcher=None,
        filterf=None,
        timeout=None,
    ):
        """Append ``func`` as the next step of the pipe and return the pipe.

        Without any option, ``func`` is composed with the previous step: it
        runs in the same thread, right after it, with no queue in between.
        After a batched stage it therefore receives the whole batch result
        (``np.argmax(x, axis=1)`` works there).

        Any option makes ``func`` a stage of its own, with a bounded input
        queue and ``num_workers`` threads (default 1).

        Args:
            func: Function of one item. A Keras-style model, or any object
                with a ``predict`` method, is called through ``predict``. A
                PyTorch module is called without gradient tracking.
            num_workers: Number of threads that run this stage.
            batch_size: Maximum number of items per call. A worker takes
                every item already queued, up to this size, so batches are
                full when the stage is the bottleneck and never wait for
                items that are not there. ``func`` receives
                ``batcher(values)`` and must return one result per item (a
                sequence or an array whose first axis is the batch).
            batcher: Function that builds a batch from a list of values,
                for example ``np.vstack``. Default: the list itself.
            filterf: Predicate of one value. Items for which it returns a
                false value are removed before this stage and counted in
                :attr:`filtered`.
            timeout: Maximum time in seconds that this stage waits with no
                item arriving. When it passes, the run stops early and
                :attr:`timed_out` becomes true. Items finished so far are
                returned, and unfinished ones are counted under
                ``"StageTimeoutError"``. Default: wait as long as the
                previous stage works. End of input never needs a timeout.
                The timeout does not limit how long ``func`` runs, so a
                call that never returns blocks the pipe; give network calls
                a timeout of their own.

        Raises:
            TypeError: ``func``, ``batcher`` or ``filterf`` is not callable.
            ValueError: A count is not a positive integer, or ``timeout``
                is not a positive number.
        """
        options = (num_workers, batch_size, batcher, filterf, timeout)
        function = _as_stage_function(func)
        _validate_positive_int(num_workers, "num_workers")
        _validate_positive_int(batch_size, "batch_size")
        _validate_callable(batcher, "batcher")
        _validate_callable(filterf, "filterf")
        if timeout is not None and not (_is_number(timeout) and timeout > 0):
            raise ValueError(
                "timeout must be a positive number of seconds or None, "
                "got {!r}".format(timeout)
            )

        if all(option is None for option in options):
            if self._stages:
                self._stages[-1].functions.append(function)
            else:
                self._stages.append(_Stage(function, name=_describe(func)))
            return self

        self._stages.append(
            _Stage(
                function,
                name=_describe(func),
                buffered=True,
                num_workers=num_workers,
                batch_size=batch_size,
                batcher=batcher,
                filterf=filterf,
                timeout=timeout,
            )
        )
        return self

    def __call__(self, data):
        """Apply the pipe to ``data``; the same as :meth:`apply_unordered`."""
        return self.apply_unordered(data)

    def apply_unordered(self, data):
        """Apply the pipe to every item of ``data``, in completion order.

        A dict gives a dict with the same keys, minus the dropped items.
        A list, tuple, set or frozenset gives the same type of collection
        of ``(index, result)`` pairs, where index is the position in the
        iteration order of the input. A generator or other iterator gives
        a generator of such pairs that reads its input lazily, so the pipe
        holds at most its queues' capacity of items. Other iterables, such
        as ``range``, give a list.

        Raises:
            TypeError: ``data`` is not iterable or is a string.
            Exception: Whatever the input iterator raises. A lazy result
                first yields the items read before the error.
        """
        return self._apply(data, ordered=False)

    def apply_ordered(self, data):
        """Apply the pipe like :meth:`apply_unordered`, keeping input order.

        Lists, tuples and generators give their pairs sorted by index, and
        dicts keep the input's key order. Sets have no order, so they give
        the same set as :meth:`apply_unordered`. For a generator input, a
        slow item holds back the results after it, and the pipe then pauses
        reading its input when that backlog reaches twice its capacity.
        """
        return self._apply(data, ordered=True)

    @property
    def errors(self):
        """Dict of exception class name to the number of items it dropped.

        It covers the latest call, and grows while a lazy result is read.
        """
        return {} if self._last_run is None else self._last_run.error_counts()

    @property
    def dropped(self):
        """Number of items of the latest call dropped because a stage raised."""
        return 0 if self._last_run is None else self._last_run.dropped

    @property
    def filtered(self):
        """Number of items of the latest call removed by a ``filterf``."""
        return 0 if self._last_run is None else self._last_run.filtered

    @property
    def timed_out(self):
        """Whether the latest call stopped early because a stage timed out."""
        return self._last_run is not None and self._last_run.stall is not None

    def _apply(self, data, ordered):
        kind, pairs = _index_input(data)
        stages = [stage.copy() for stage in self._stages]
        lazy_ordered = ordered and kind == "lazy"
        run = _Run(stages, report_skips=lazy_ordered)
        self._last_run = run

        if kind == "lazy":
            if lazy_ordered and run.buffered_stages:
                return _yield_in_order(run, pairs)
            return _strip_sequence_numbers(run.iterate(pairs))

        results = list(run.iterate(pairs))
        if ordered:
            results.sort(key=lambda result: result[0])
        return _build_output(kind, data, results)


class _Stage:
    """One step of a pipe: functions that share threads, queue and options."""

    def __init__(
        self,
        function,
        name,
        buffered=False,
        num_workers=None,
        batch_size=None,
        batcher=None,
        filterf=None,
        timeout=None,
    ):
        self.functions = [function]
        self.name = name
        self.buffered = buffered
        self.num_workers = num_workers or 1
        self.batched = batch_size is not None or batcher is not None
        self.batch_size = batch_size or 1
        self.batcher = batcher or list
        self.filterf = filterf
        self.timeout = timeout

    def copy(self):
        """Return a copy whose function list later ``add`` calls leave alone."""
        stage = _Stage.__new__(_Stage)
        stage.__dict__.update(self.__dict__)
        stage.functions = list(self.functions)
        return stage

    @property
    def queue_size(self):
        return max(
            _MIN_QUEUE_SIZE,
            _QUEUE_SIZE_FACTOR * self.num_workers * self.batch_size,
        )

    def apply_to_item(self, value):
        for function in self.functions:
            value = function(value)
        return value

    def apply_to_batch(self, values):
        """Apply the stage to a batch and return one result per value.

        Raises ValueError when the result count differs from the batch size.
        """
        result = self.functions[0](self.batcher(values))
        for function in self.functions[1:]:
            result = function(result)

        try:
            count = len(result)
        except TypeError:
            result = list(result)
            count = len(result)
        if count != len(values):
            raise ValueError(
                "stage {} returned {} results for a batch of {} items; a batch "
                "function must return one result per item".format(
                    self.name, count, len(values)
                )
            )
        return result


class _Run:
    """State of one call of a pipe: queues, threads and counters.

    Items travel as ``(seq, key, value)`` tuples, where ``seq`` numbers them
    in input order. Leading functions composed before any buffered stage run
    in the feeder thread, which reads the input. Each buffered stage has a
    bounded input queue and its worker threads. The collector, which runs in
    the caller's thread, reads the last queue.

    End of input travels as one ``_END`` per worker. The last worker of a
    stage to finish sends ``_END`` on, so the end is detected without
    timeouts. Cancellation (early close, a stall or a failure) sets
    ``cancelled``, which every blocked queue operation rechecks.
    """

    def __init__(self, stages, report_skips):
        if stages and not stages[0].buffered:
            self.leading_stage = stages[0]
            self.buffered_stages = stages[1:]
        else:
            self.leading_stage = None
            self.buffered_stages = stages
        self.report_skips = report_skips

        self.queues = [queue.Queue(stage.queue_size) for stage in self.buffered_stages]
        if self.buffered_stages:
            self.queues.append(queue.Queue(self.buffered_stages[-1].queue_size))
        self.active_workers = [stage.num_workers for stage in self.buffered_stages]
        self.last_input_times = [None] * len(self.buffered_stages)

        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.closed = False
        self.failure = None
        self.input_error = None
        self.stall = None
        self.stall_stage = None

        self.items_read = 0
        self.items_received = 0
        self.dropped = 0
        self.filtered = 0
        self.errors = collections.Counter()
        self.first_errors = {}

        # Reorder window of an ordered lazy run: the feeder reads item seq
        # only while seq - next_expected < window_size.
        self.window_condition = threading.Condition()
        self.next_expected = 0
        capacity = sum(queue_.maxsize for queue_ in self.queues) + sum(
            stage.num_workers * stage.batch_size for stage in self.buffered_stages
        )
        self.window_size = 2 * capacity

    def error_counts(self):
        with self.lock:
            return dict(self.errors)

    def iterate(self, pairs):
        """Yield ``(seq, key, result)`` for each kept item, in completion order.

        With ``report_skips``, also yield ``(_SKIPPED, seq)`` for each item
        that was dropped or filtered.
        """
        if not self.buffered_stages:
            return self._iterate_inline(pairs)
        return self._iterate_buffered(pairs)

    def _iterate_inline(self, pairs):
        """Apply a pipe without buffered stages in the caller's thread.

        A pipe without any stage returns every value unchanged.
        """
        try:
            for seq, (key, value) in enumerate(pairs):
                self.items_read += 1
                item_kept = True
                if self.leading_stage is not None:
                    item_kept, value = self.apply_item(self.leading_stage, value)
                if item_kept:
                    self.items_received += 1
                    yield seq, key, value
        finally:
            self.finish()

    def _iterate_buffered(self, pairs):
        threads = [
            threading.Thread(
                target=self._feed,
                args=(pairs,),
                name="studio-pipe-feeder",
                daemon=True,
            )
        ]
        for stage_index, stage in enumerate(self.buffered_stages):
            for worker_index in range(stage.num_workers):
                threads.append(
                    threading.Thread(
                        target=self._work,
                        args=(stage_index,),
                        name="studio-pipe-stage{}-worker{}".format(
                            stage_index + 1, worker_index + 1
                        ),
                        daemon=True,
                    )
                )

        output_queue = self.queues[-1]
        try:
            for thread in threads:
                thread.start()

            while True:
                message = self.get(output_queue)
                if message is _END or message is _CANCELLED:
                    break
                if message[0] is not _SKIPPED:
                    self.items_received += 1
                yield message

            if self.stall is not None:
                # Items that finished before the stall are still valid.
                for message in _drain(output_queue):
                    if message[0] is not _SKIPPED:
                        self.items_received += 1
                    yield message
        finally:
            self.finish()

        if self.failure is not None:
            raise self.failure
        if self.input_error is not None:
            raise self.input_error

    def _feed(self, pairs):
        """Read the input, apply the leading functions and fill the first queue."""
        first_queue = self.queues[0]
        try:
            iterator = iter(pairs)
            seq = 0
            while not self.cancelled.is_set():
                if self.report_skips and not self.wait_for_window(seq):
                    return
                try:
                    key, value = next(iterator)
                except StopIteration:
                    break
                except Exception as error:
                    # The items read so far still finish; the caller then
                    # gets the error, as from a plain loop over the input.
                    self.input_error = error
                    break
                self.items_read += 1

                item_kept = True
                if self.leading_stage is not None:
                    item_kept, value = self.apply_item(self.leading_stage, value)
                if item_kept:
                    if not self.put(first_queue, (seq, key, value)):
                        return
                elif not self.skip(seq):
                    return
                seq += 1

            for _ in range(self.buffered_stages[0].num_workers):
                if not self.put(first_queue, _END):
                    return
        except BaseException as error:
            # The caller's thread re-raises it, so nothing is swallowed here.
            self.fail(error)

    def _work(self, stage_index):
        """Run one worker of a buffered stage until end of input or cancel."""
        stage = self.buffered_stages[stage_index]
        input_queue = self.queues[stage_index]
        output_queue = self.queues[stage_index + 1]
        try:
            end_of_input = False
            while not end_of_input:
                message = self.get(input_queue, stage_index)
                if message is _END or message is _CANCELLED:
                    break

                batch = [message]
                while len(batch) < stage.batch_size:
                    try:
                        message = input_queue.get_nowait()
                    except queue.Empty:
                        break
                    if message is _END:
                        end_of_input = True
                        break
                    batch.append(message)

                if not self._process(stage, batch, output_queue):
                    break
        except BaseException as error:
            # The caller's thread re-raises it, so nothing is swallowed here.
            self.fail(error)
        finally:
            self._finish_worker(stage_index)

    def _process(self, stage, batch, output_queue):
        """Filter and apply one batch and queue the results.

        Returns False when the run was cancelled meanwhile.
        """
        items = []
        for seq, key, value in batch:
            if self.keep_item(stage, value):
                items.append((seq, key, value))
            elif not self.skip(seq):
                return False

        if not items:
            return True

        if stage.batched:
            try:
                results = stage.apply_to_batch([value for _, _, value in items])
            except Exception as error:
                self.record_drop(stage, error, len(items))
                return all(self.skip(seq) for seq, _, _ in items)
            for (seq, key, _), result in zip(items, results):
                if not self.put(output_queue, (seq, key, result)):
                    return False
            return True

        for seq, key, value in items:
            try:
                result = stage.apply_to_item(value)
            except Exception as error:
                self.record_drop(stage, error)
                if not self.skip(seq):
                    return False
                continue
            if not self.put(output_queue, (seq, key, result)):
                return False
        return True

    def _finish_worker(self, stage_index):
        """Pass end of input on once the last worker of a stage is done."""
        with self.lock:
            self.active_workers[stage_index] -= 1
            last_worker = self.active_workers[stage_index] == 0
        if not last_worker:
            return

        next_index = stage_index + 1
        if next_index < len(self.buffered_stages):
            end_count = self.buffered_stages[next_index].num_workers
        else:
            end_count = 1
        for _ in range(end_count):
            if not self.put(self.queues[next_index], _END):
                return

    def apply_item(self, stage, value):
        """Return ``(True, result)``, or ``(False, None)`` for a removed item."""
        if not self.keep_item(stage, value):
            return False, None
        try:
            return True, stage.apply_to_item(value)
        except Exception as error:
            self.record_drop(stage, error)
            return False, None

    def keep_item(self, stage, value):
        """Apply the stage's filter and count the items it removes."""
        if stage.filterf is None:
            return True
        try:
            keep = stage.filterf(value)
        except Exception as error:
            self.record_drop(stage, error)
            return False
        if not keep:
            with self.lock:
                if not self.closed:
                    self.filtered += 1
        return bool(keep)

    def record_drop(self, stage, error, count=1):
        with self.lock:
            if self.closed:
                return
            kind = type(error).__name__
            self.dropped += count
            self.errors[kind] += count
            self.first_errors.setdefault(kind, (stage.name, error))

    def skip(self, seq):
        """Tell an ordered collector that item ``seq`` yields no result.

        Returns False when the run was cancelled meanwhile.
        """
        if not self.report_skips:
            return True
        return self.put(self.queues[-1], (_SKIPPED, seq))

    def put(self, queue_, message):
        """Put ``message`` into ``queue_``; return False if cancelled first."""
        while True:
            try:
                queue_.put(message, timeout=_POLL_INTERVAL_S)
                return True
            except queue.Full:
                if self.cancelled.is_set():
                    return False

    def get(self, queue_, stage_index=None):
        """Return the next message of ``queue_``, or ``_CANCELLED``.

        For a stage with a timeout, a wait with no item reaching any worker
        of the stage for that long stops the run.
        """
        timeout = None
        if stage_index is not None:
            timeout = self.buffered_stages[stage_index].timeout
        poll_interval = _POLL_INTERVAL_S if timeout is None else min(_POLL_INTERVAL_S, timeout)
        wait_start = time.monotonic()

        while True:
            try:
                message = queue_.get(timeout=poll_interval)
            except queue.Empty:
                if self.cancelled.is_set():
                    return _CANCELLED
                if timeout is not None:
                    self._check_stall(stage_index, wait_start)
                continue
            if stage_index is not None:
                self.last_input_times[stage_index] = time.monotonic()
            return message

    def _check_stall(self, stage_index, wait_start):
        last_input = self.last_input_times[stage_index]
        idle_since = wait_start if last_input is None else max(wait_start, last_input)
        idle_s = time.monotonic() - idle_since
        stage = self.buffered_stages[stage_index]
        if idle_s < stage.timeout:
            return
        with self.lock:
            if self.stall is None and not self.cancelled.is_set():
                self.stall = StageTimeoutError(
                    "stage {} received no item for {:.3g} s (timeout {} s)".format(
                        stage.name, idle_s, stage.timeout
                    )
                )
                self.stall_stage = stage
                self.cancelled.set()

    def wait_for_window(self, seq):
        """Block the feeder until item ``seq`` fits in the reorder window.

        Returns False when the run was cancelled meanwhile.
        """
        with self.window_condition:
            while seq - self.next_expected >= self.window_size:
                if self.cancelled.is_set():
                    return False
                self.window_condition.wait(_POLL_INTERVAL_S)
        return True

    def advance_window(self, next_expected):
        with self.window_condition:
            self.next_expected = next_expected
            self.window_condition.notify_all()

    def fail(self, error):
        with self.lock:
            if self.failure is None:
                self.failure = error
            self.cancelled.set()

    def finish(self):
        """Cancel the threads, count the items a stall lost and log errors.

        Counters stay fixed after this, so a worker that finishes an
        abandoned item later changes nothing.
        """
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.cancelled.set()
            lost = 0
            if self.stall is not None:
                lost = self.items_read - self.items_received - self.dropped - self.filtered
            if lost > 0:
                kind = type(self.stall).__name__
                self.dropped += lost
                self.errors[kind] += lost
                self.first_errors.setdefault(kind, (self.stall_stage.name, self.stall))
            errors = dict(self.errors)
            first_errors = self.first_errors
            self.first_errors = {}

        if self.stall is not None:
            logger.warning(
                "ModelPipe stopped early because %s. It dropped %d unfinished "
                "item(s) and did not read the rest of the input",
                self.stall,
                lost,
            )

        for kind, count in errors.items():
            stage_name, error = first_errors[kind]
            if error is self.stall:
                continue
            logger.warning(
                "ModelPipe dropped %d item(s) because of %s, first raised by "
                "stage %s: %s",
                count,
                kind,
                stage_name,
                error,
                exc_info=(type(error), error, error.__traceback__)
                if error.__traceback__ is not None
                else None,
            )


def _yield_in_order(run, pairs):
    """Yield the ``(key, result)`` pairs of a lazy run in input order."""
    pending = {}
    next_seq = 0
    for message in run.iterate(pairs):
        if message[0] is _SKIPPED:
            pending[message[1]] = _SKIPPED
        else:
            seq, key, result = message
            pending[seq] = (key, result)

        while next_seq in pending:
            entry = pending.pop(next_seq)
            next_seq += 1
            run.advance_window(next_seq)
            if entry is not _SKIPPED:
                yield entry

    # A stall can leave gaps, so the rest is released in order past them.
    for seq in sorted(pending):
        if pending[seq] is not _SKIPPED:
            yield pending[seq]


def _strip_sequence_numbers(messages):
    for _, key, result in messages:
        yield key, result


def _drain(queue_):
    """Return the messages in ``queue_`` without waiting, ending at ``_END``."""
    messages = []
    while True:
        try:
            message = queue_.get_nowait()
        except queue.Empty:
            return messages
        if message is _END:
            return messages
        messages.append(message)


def _index_input(data):
    """Return the output kind of ``data`` and an iterator of (key, value).

    The key is the dict key for mappings and the position otherwise.
    """
    if isinstance(data, (str, bytes, bytearray)):
        raise TypeError(
            "ModelPipe expects a collection of items, got {}. Wrap a single "
            "item in a list".format(type(data).__name__)
        )
    if isinstance(data, Mapping):
        return "dict", iter(data.items())
    if isinstance(data, list):
        kind = "list"
    elif isinstance(data, tuple):
        kind = "tuple"
    elif isinstance(data, frozenset):
        kind = "frozenset"
    elif isinstance(data, set):
        kind = "set"
    elif isinstance(data, Iterator):
        kind = "lazy"
    else:
        try:
            iter(data)
        except TypeError:
            raise TypeError(
                "ModelPipe expects a dict, list, tuple, set or iterator, got "
                "{}".format(type(data).__name__)
            ) from None
        kind = "list"
    return kind, enumerate(data)


def _build_output(kind, data, results):
    if kind == "dict":
        return {key: result for _, key, result in results}
    pairs = [(key, result) for _, key, result in results]
    if kind == "list":
        return pairs
    if kind == "tuple":
        return tuple(pairs)
    try:
        return frozenset(pairs) if kind == "frozenset" else set(pairs)
    except TypeError as error:
        raise TypeError(
            "the results of a {} input are returned in a {}, so they must be "
            "hashable ({}). Pass a list instead".format(kind, kind, error)
        ) from error


def _as_stage_function(func):
    """Return the callable that a stage calls for ``func``.

    An object with a ``predict`` method (Keras, scikit-learn) is called
    through it. A PyTorch module is wrapped by :class:`_TorchModuleCaller`.
    """
    predict = getattr(func, "predict", None)
    if callable(predict) and not inspect.isroutine(func) and not isinstance(func, type):
        return _prepare_predict(func, predict)
    if _is_torch_module(func):
        if getattr(func, "training", False):
            logger.warning(
                "PyTorch module %s is in training mode, so dropout and batch "
                "normalization act as in training; call .eval() on it before "
                "adding it to a pipe for inference",
                type(func).__name__,
            )
        return _TorchModuleCaller(func)
    if not callable(func):
        raise TypeError(
            "ModelPipe.add expects a function, a model with a predict method "
            "or a PyTorch module, got {}".format(type(func).__name__)
        )
    return func


def _prepare_predict(model, predict):
    # NOTE: Keras 2 with the TensorFlow 1 backend could predict from worker
    # threads only after this method built the predict function in the
    # creating thread. The call is untested against such a Keras version.
    make_predict_function = getattr(model, "_make_predict_function", None)
    if callable(make_predict_function):
        make_predict_function()

    # Keras's predict defaults to verbose="auto", which prints a progress bar
    # on every call, so the pipe passes verbose=0 where it is accepted.
    try:
        parameters = inspect.signature(predict).parameters
    except (TypeError, ValueError):
        return predict
    if "verbose" in parameters:
        return functools.partial(predict, verbose=0)
    return predict


def _is_torch_module(obj):
    return (
        callable(obj)
        and callable(getattr(obj, "forward", None))
        and callable(getattr(obj, "parameters", None))
    )


class _TorchModuleCaller:
    """Callable that runs a PyTorch module on a batch without gradient tracking.

    A batch that is not a tensor (a numpy array, for example) is converted
    to one on the module's device, with the module's dtype if it is floating
    point, and the output is converted back to numpy. A tensor batch gets a
    tensor result.

    NOTE: The conversions run against real PyTorch only in
    test_real_torch_module, which is skipped where PyTorch is not installed.
    """

    def __init__(self, module):
        self.module = module

    def __call__(self, batch):
        torch = sys.modules.get("torch")
        if torch is None:
            # Without PyTorch loaded, the object only looks like a module,
            # so it is called as it is.
            return self.module(batch)

        converted = not isinstance(batch, torch.Tensor)
        if converted:
            batch = torch.as_tensor(batch)
        parameter = next(iter(self.module.parameters()), None)
        if parameter is not None:
            if batch.is_floating_point():
                batch = batch.to(device=parameter.device, dtype=parameter.dtype)
            else:
                batch = batch.to(device=parameter.device)

        with torch.no_grad():
            output = self.module(batch)
        if converted and isinstance(output, torch.Tensor):
            output = output.detach().cpu().numpy()
        return output


def resize_to_model_input(model, input_index=0, data_format=None):
    """Return a function that converts an image into input for ``model``.

    ``model`` is a Keras-style model whose ``input_shape`` is
    ``(None, height, width, channels)`` or ``(None, channels, height,
    width)``, or a list of such shapes for a model with several inputs, of
    which ``input_index`` selects one. ``model`` may also be a shape tuple
    without the batch axis. ``data_format`` is ``"channels_last"`` or
    ``"channels_first"``. When it is None, the shape decides: channels first
    only if the first axis is 1, 3 or 4 and the last is not.

    See :func:`resize_to_shape` for what the returned function does.

    Raises:
        TypeError: ``model`` has no ``input_shape``.
        ValueError: The shape is not an image shape of known size.
        ImportError: numpy or Pillow is not installed.
    """
    if isinstance(model, tuple):
        shape = model
    else:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise TypeError(
                "{} has no input_shape attribute. Pass a shape such as "
                "(height, width, channels) instead".format(type(model).__name__)
            )
        if isinstance(input_shape, list):
            input_shape = input_shape[input_index]
        shape = tuple(input_shape)[1:]

    if data_format is None:
        data_format = "channels_last"
        if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
            data_format = "channels_first"
    return resize_to_shape(shape, data_format)


def resize_to_shape(shape, data_format="channels_last"):
    """Return a function that converts an image into a model input array.

    ``shape`` is ``(height, width, channels)``, ``(channels, height, width)``
    with ``data_format="channels_first"``, or ``(height, width)`` for a
    grayscale input without a channel axis. Channels must be 1 (grayscale),
    3 (RGB) or 4 (RGBA).

    The returned function accepts a PIL image, encoded image bytes or a
    numpy array of pixels. It resizes the image to height x width, converts
    it to the channel count, scales values to [0, 1] and returns a float32
    array of shape ``(1,) + shape``, a batch of one, so that ``np.vstack``
    joins such arrays into a batch.

    Raises:
        ValueError: ``shape`` or ``data_format`` is invalid.
        ImportError: numpy or Pillow is not installed.
    """
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "data_format must be 'channels_last' or 'channels_first', got "
            "{!r}".format(data_format)
        )
    shape = tuple(shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(size, int) and size > 0 for size in shape
    ):
        raise ValueError(
            "expected an image shape (height, width, channels) or (height, "
            "width) of positive integers, got {!r}; a model with a variable "
            "input size needs an explicit shape".format(shape)
        )

    if len(shape) == 2:
        height, width = shape
        channels = None
    elif data_format == "channels_first":
        channels, height, width = shape
    else:
        height, width, channels = shape
    modes = {None: "L", 1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise ValueError(
            "expected 1, 3 or 4 channels in shape {!r}, got {}".format(shape, channels)
        )
    mode = modes[channels]

    if np is None:
        raise ImportError(
            "resize_to_shape requires numpy, which is not installed. Install "
            "it with `pip install numpy`"
        )
    image_module = _import_pillow()
    resampling = getattr(image_module, "Resampling", image_module).LANCZOS

    def convert_image(image):
        image = _to_pil_image(image_module, image)
        if image.mode != mode:
            image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), resampling)

        array = np.asarray(image, dtype=np.float32) / 255.0
        if channels == 1:
            array = array[:, :, np.newaxis]
        if channels is not None and data_format == "channels_first":
            array = np.transpose(array, (2, 0, 1))
        return array.reshape((1,) + shape)

    return convert_image


def _import_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "resizing images requires Pillow, which is not installed. Install "
            "it with `pip install pillow`"
        ) from None
    return Image


def _to_pil_image(image_module, image):
    if isinstance(image, image_module.Image):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return image_module.open(io.BytesIO(image))
    if np is not None and isinstance(image, np.ndarray):
        return image_module.fromarray(image)
    raise TypeError(
        "expected a PIL image, encoded image bytes or a numpy array, got "
        "{}".format(type(image).__name__)
    )


def _describe(func):
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name or type(func).__name__


def _validate_positive_int(value, name):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            "{} must be a positive integer or None, got {!r}".format(name, value)
        )


def _validate_callable(value, name):
    if value is not None and not callable(value):
        raise TypeError(
            "{} must be callable or None, got {}".format(name, type(value).__name__)
        )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
