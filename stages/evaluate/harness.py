"""The head of every benchmark program (see datasets.Task.program): it runs the solution, then
the tests, and fails the task when a function the tests call returns anything but plain data.

Why: `assert candidate(x) == y` passes for any object whose __eq__ answers True (a subclass of
int, say), so a checked return value must be of one of the types the benchmarks expect, by
exact type, all the way down: None, bool, int, float, complex, str, bytes, and list, tuple,
dict, set, frozenset of them. Three more, because reference solutions return them: re.Match
(sanitized MBPP 737, 787, 794; equal only to itself), collections.Counter (MBPP 40, 88, 902;
accepted while its code, its module and the builtins are as they were) and
collections.defaultdict (MBPP 653; with a plain default_factory).

This file's source is copied into each program ahead of a call of `_akd_run`, so it runs before
the solution. Everything `_akd_run` uses after the solution (type, id, exec, os._exit, the
allowed types) is captured first, in locals and closures: a solution that rebinds builtins or
this file's globals does not change the verdict, and builtins it replaced are put back before
the tests. The tests run in a copy of the solution's namespace in which the functions they
call are wrapped; the solution's own calls (recursion) are not, so they cost no stack depth.
A bad value writes one line to stderr and ends the process at once (no `except` in the tests
can swallow it). Code written to break out of the harness (walking frames, gc, ctypes) is out
of scope, as it is for the sentinel (see sandbox.py).
It must stay self-contained: no imports but modules the interpreter loads at start-up (builtins,
os, sys, collections, re), nothing at module level but definitions.
"""


def _akd_checker():
    """check(value) -> None when value is plain data, else the type of its first part that is
    not. Types are compared by identity, never by == or hash (a metaclass may fake those)."""
    import builtins
    import collections
    import re

    exact_type, ident, type_repr, new_set, copy = type, id, type.__repr__, set, dict
    keys, values = dict.keys, dict.values
    counter, defaultdict = collections.Counter, collections.defaultdict
    scalars = {id(t) for t in (type(None), bool, int, float, complex, str, bytes,
                               type(re.match("", "")))}  # a Match equals only itself
    sequences = {id(t) for t in (list, tuple, set, frozenset)}
    mappings = {id(t) for t in (dict, defaultdict, counter)}
    factories = {id(t) for t in (list, tuple, set, frozenset, dict, int, float, str, bytes, bool)}
    # Counter's == is Python code reading its class, its module's globals and the builtins.
    counter_world = [(live, copy(live)) for live in (counter.__dict__, vars(collections),
                                                     vars(builtins))]
    builtin_names = copy(vars(builtins))

    def counter_changed():
        for live, saved in counter_world:
            for key, value in saved.items():
                if live.get(key) is not value:
                    return True
        (live_class, saved_class), (live_module, saved_module) = counter_world[:2]
        for key in live_class:
            if key not in saved_class:  # a method added to Counter
                return True
        for key in live_module:
            if key not in saved_module and key in builtin_names:  # a builtin shadowed
                return True
        return False

    def check(value):
        pending, seen = [value], new_set()
        while pending:
            item = pending.pop()
            kind = ident(exact_type(item))
            if kind in scalars:
                continue
            if kind not in sequences and kind not in mappings:
                return type_repr(exact_type(item))
            if ident(item) in seen:  # a container holding itself
                continue
            seen.add(ident(item))
            if kind in sequences:
                pending.extend(item)
                continue
            if kind == ident(counter) and counter_changed():
                return "collections.Counter, after its code was changed"
            if kind == ident(defaultdict) and item.default_factory is not None and ident(
                    item.default_factory) not in factories:
                return "collections.defaultdict with a default_factory of its own"
            pending.extend(keys(item))
            pending.extend(values(item))
        return None

    return check


def _akd_run(solution, tests, checked_names):
    """Run `solution` in __main__, then `tests` with each of `checked_names` that the solution
    defines wrapped so that its return values are checked."""
    import builtins
    import os
    import sys

    check = _akd_checker()
    write, exit_now, compile_, exec_, copy, is_callable = (
        os.write, os._exit, compile, exec, dict, callable)
    builtin_names, saved_builtins = builtins.__dict__, dict(builtins.__dict__)
    settrace, setprofile = sys.settrace, sys.setprofile
    main = sys.modules["__main__"].__dict__
    sources = {"solution.py": solution, "tests.py": tests}

    def guarded(name, function):
        def checked(*args, **kwargs):
            result = function(*args, **kwargs)
            bad = check(result)
            if bad is not None:
                write(2, f"\nakd-harness: {name}() returned a value of type {bad}; the benchmark "
                         "expects plain built-in values (None, bool, int, float, complex, str, "
                         "bytes and lists, tuples, dicts, sets of them)\n".encode("utf-8",
                                                                                  "replace"))
                exit_now(1)
            return result

        checked.__name__ = checked.__qualname__ = name
        return checked

    def show_sources():
        """Let the traceback quote the solution's and the tests' lines."""
        import linecache

        for filename, text in sources.items():
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)

    try:
        exec_(compile_(solution, "solution.py", "exec", dont_inherit=True), main)
        settrace(None)
        setprofile(None)
        for key, value in saved_builtins.items():
            if builtin_names.get(key) is not value:
                builtin_names[key] = value
        namespace = copy(main)
        for name in checked_names:
            function = namespace.get(name)
            if function is not None and is_callable(function):
                namespace[name] = guarded(name, function)
        exec_(compile_(tests, "tests.py", "exec", dont_inherit=True), namespace)
    except BaseException:
        show_sources()
        raise
