"""Runs a StudioML optimizer plugin for studiod.

studiod starts `python plugin_driver.py PLUGIN.py` and talks to it in JSON
lines. The first line it sends is {"hyperparameters": [...], "config": {...}};
then each line is {"op": "ask"} or {"op": "tell", "fitnesses": [...],
"behaviors": [...] or null}. The driver replies with one line each:
{"ok": true, ...} or {"ok": false, "error": "..."}. The plugin's own prints go to stderr, which
studiod keeps in the search's optimizer.log.

The plugin file defines `Optimizer(hyperparameters, config, logger)` with
`ask()`, `tell(population, fitnesses[, behaviors])`, `stop()` and optionally
`disp()`, as StudioML's plugins do.
"""

import importlib.util
import json
import logging
import sys
import traceback


class HyperParameter:
    """One parameter's range, with StudioML's attribute names."""

    def __init__(self, spec):
        self.key = spec["name"]
        self.min_range = spec["min"]
        self.max_range = spec["max"]
        self.array_length = spec.get("array_length")
        self.is_log = spec.get("log", False)
        self.rand_init = spec.get("random_init", False)
        self.is_constrained = not spec.get("unbounded", False)
        self.values = None

    def __repr__(self):
        return "HyperParameter(%r, %r)" % (self.key, self.values)


def plain(value):
    """Turns numpy arrays and scalars into lists and floats."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [float(item) for item in value]
    return float(value)


def individual_to_dict(individual, names):
    """Accepts a dict, a list of HyperParameter-like objects, or a list of
    values in the order of the hyperparameters."""
    if isinstance(individual, dict):
        return {str(name): plain(value) for name, value in individual.items()}
    result = {}
    for position, item in enumerate(individual):
        if hasattr(item, "key") and hasattr(item, "values"):
            result[item.key] = plain(item.values)
        else:
            result[names[position]] = plain(item)
    return result


def main():
    protocol = sys.stdout
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    logger = logging.getLogger("optimizer")

    def answer(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        setup = json.loads(sys.stdin.readline())
        spec = importlib.util.spec_from_file_location("studio_optimizer_plugin", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        hyperparameters = [HyperParameter(item) for item in setup["hyperparameters"]]
        names = [parameter.key for parameter in hyperparameters]
        optimizer = module.Optimizer(hyperparameters, setup.get("config") or {}, logger)
    except Exception:
        answer({"ok": False, "error": traceback.format_exc()})
        return 1
    answer({"ok": True})

    population = None
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request["op"] == "ask":
                if optimizer.stop():
                    answer({"ok": True, "stop": True})
                    continue
                population = optimizer.ask()
                answer({
                    "ok": True,
                    "population": [individual_to_dict(item, names) for item in population],
                })
            elif request["op"] == "tell":
                behaviors = request.get("behaviors")
                if behaviors is None:
                    optimizer.tell(population, request["fitnesses"])
                else:
                    optimizer.tell(population, request["fitnesses"], behaviors)
                if hasattr(optimizer, "disp"):
                    optimizer.disp()
                answer({"ok": True})
            else:
                answer({"ok": False, "error": "unknown op %r" % request["op"]})
        except Exception:
            answer({"ok": False, "error": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
