"""Every flag is defined once: a flag name that two commands share has one type and one help
text everywhere (its default may differ, and --help shows it). And the target's flags reach
every command that runs on a target, as one object."""

from typing import Annotated

import typer

from isotune import cli

PREFILL = ("run", "profile", "bench", "search")


def _options() -> dict[str, list[tuple[str, tuple]]]:
    """flag -> [(command, (value type, multiple, is_flag, help)), ...] over the whole app."""
    group = typer.main.get_command(cli.app)
    seen: dict[str, list[tuple[str, tuple]]] = {}
    for name, command in group.commands.items():
        for p in command.params:
            for flag in p.opts:
                kind = (str(p.type_descriptor.annotation), p.multiple, getattr(p, "is_flag", False), p.help)
                seen.setdefault(flag, []).append((name, kind))
    return seen


def test_a_shared_flag_has_one_type_and_one_help():
    differing = {flag: uses for flag, uses in _options().items() if len({kind for _, kind in uses}) > 1}
    assert not differing, "\n".join(f"{flag}: {uses}" for flag, uses in differing.items())


def test_the_walk_sees_a_second_meaning(monkeypatch):
    """The rule must catch a flag redefined in one command, or it proves nothing."""
    app = typer.Typer()

    @app.command()
    def one(tp: cli.TpOpt = None) -> None: ...

    @app.command()
    def two(tp: Annotated[int, typer.Option("--tp", help="other")] = 1) -> None: ...

    monkeypatch.setattr(cli, "app", app)
    kinds = {kind for _, kind in _options()["--tp"]}
    assert len(kinds) == 2


def test_every_prefill_command_takes_the_whole_target():
    seen = _options()
    for name in cli.TARGET_OPTIONS:
        flag = "--" + name.replace("_", "-")
        assert {c for c, _ in seen[flag]} >= set(PREFILL), flag
