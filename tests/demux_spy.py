"""How much audio the decoder pulled from each file: a spy around the real ``av.open`` that
counts the packets (and their seconds) each container yields, so a test asserts how much
work refusing a file cost instead of timing it. Nothing is replaced: every call goes to PyAV."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

import av


@dataclass
class Opened:
    """One container the decoder opened."""

    source: object
    name: str | None  # the name given to the decode call that opened it, if wrapped
    packets: int = 0
    seconds: float = 0.0


class _Counted:
    """The real container, with ``demux`` counting what it yields."""

    def __init__(self, container, record: Opened):
        self._container = container
        self._record = record

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def demux(self, *args, **kwargs):
        for packet in self._container.demux(*args, **kwargs):
            if packet.size:
                self._record.packets += 1
                if packet.duration and packet.time_base:
                    self._record.seconds += float(packet.duration * packet.time_base)
            yield packet


_decoding: ContextVar[str | None] = ContextVar("decoding", default=None)


@dataclass
class DemuxSpy:
    """``opened``: every container ``av.open`` returned meanwhile, in order; ``by_name``: the
    containers opened by each :func:`decode` call in the patched modules, by its ``name``."""

    opened: list[Opened] = field(default_factory=list)
    by_name: dict[str, list[Opened]] = field(default_factory=dict)

    def install(self, monkeypatch, *decode_users: str) -> DemuxSpy:
        """Wrap ``av.open``; also wrap ``decode`` in each module named (e.g.
        ``opentranscribe_pipeline.assets.media``) to attribute containers to names."""
        real_open = av.open

        def counting_open(source, *args, **kwargs):
            container = real_open(source, *args, **kwargs)
            if kwargs.get("mode", args[0] if args else "r") != "r":
                return container
            record = Opened(source, _decoding.get())
            self.opened.append(record)
            if record.name is not None:
                self.by_name.setdefault(record.name, []).append(record)
            return _Counted(container, record)

        monkeypatch.setattr(av, "open", counting_open)
        for module in decode_users:
            real_decode = __import__(module, fromlist=["decode"]).decode

            def named_decode(source, *args, _real=real_decode, name: str = "", **kwargs):
                token = _decoding.set(name)
                try:
                    return _real(source, *args, name=name, **kwargs)
                finally:
                    _decoding.reset(token)

            monkeypatch.setattr(f"{module}.decode", named_decode)
        return self
