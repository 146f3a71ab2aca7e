"""What a user's `pulumi config set` and `pulumi preview` do with the program's settings, on
the real CLI (v3.276.0) and language host built from the Go module proxy."""

from __future__ import annotations

from rehearsal.pulumi_cli import PulumiCli, error_lines

KEY = "registry-mirror"


def test_a_bad_value_stops_preview_with_one_line_naming_key_value_and_what_is_allowed(cli: PulumiCli):
    cli.run("config", "set", "registryPort", "99999")
    result = cli.run("preview", "--non-interactive", check=False)
    assert result.returncode != 0
    lines = error_lines(result)
    assert f"{KEY}:registryPort = '99999' is invalid: must be a whole number from 1 to 65535" in lines
    problems = [line for line in lines if line.startswith(f"{KEY}:")]
    assert len(problems) == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_a_refused_secret_is_named_but_its_value_never_shown(cli: PulumiCli):
    cli.run("config", "set", "--secret", "grafanaAdminPassword", "tiny-pw")
    result = cli.run("preview", "--non-interactive", check=False)
    assert result.returncode != 0
    problems = [line for line in error_lines(result) if line.startswith(f"{KEY}:")]
    assert len(problems) == 1 and problems[0].startswith(f"{KEY}:grafanaAdminPassword")
    assert "tiny-pw" not in result.stdout + result.stderr


def test_alt_names_as_a_comma_list_is_refused_by_the_cli_before_the_program_runs(cli: PulumiCli):
    """Pulumi.yaml declares altNames `array<string>`: `config set` stores the text, and the
    CLI refuses it when the stack runs, before the program could parse it."""
    assert cli.run("config", "set", "altNames", "a.example,b.example").returncode == 0
    result = cli.run("preview", "--non-interactive", check=False)
    assert result.returncode != 0
    assert "configuration key 'altNames' must be of type 'array<string>'" in result.stdout + result.stderr
    assert "invalid stack configuration" not in result.stdout + result.stderr  # the program never ran


def test_alt_names_set_by_path_reach_the_program_as_a_list(cli: PulumiCli):
    """The README's way: each name by `--path 'altNames[i]'`. A bad one is named by the
    program's own check, the good one is not: the list arrived whole."""
    cli.run("config", "set", "--path", "altNames[0]", "ok.example")
    cli.run("config", "set", "--path", "altNames[1]", "bad_name!")
    result = cli.run("preview", "--non-interactive", check=False)
    problems = [line for line in error_lines(result) if line.startswith(f"{KEY}:")]
    assert len(problems) == 1
    assert problems[0].startswith(f"{KEY}:altNames") and "'bad_name!'" in problems[0]
    assert "ok.example" not in problems[0]


def test_bad_cache_settings_stop_preview_with_one_line_each(cli: PulumiCli):
    """Issue 21: a bounded cache's keys through the CLI, the pin list set by path as the
    README says; each bad value named on a line of its own."""
    cli.run("config", "set", "cacheMaxSize", "lots")
    cli.run("config", "set", "--path", "cachePin[0]", "team/tools:1.0")
    cli.run("config", "set", "--path", "cachePin[1]", "Bad Ref")
    result = cli.run("preview", "--non-interactive", check=False)
    assert result.returncode != 0
    problems = [line for line in error_lines(result) if line.startswith(f"{KEY}:")]
    assert [line.split(" = ")[0] for line in problems] == [f"{KEY}:cacheMaxSize", f"{KEY}:cachePin"], problems
    assert "'lots' is invalid" in problems[0] and "'Bad Ref' is invalid" in problems[1]
    assert "team/tools" not in problems[1]  # the good entry arrived in the list and passed


def test_good_cache_settings_pass_the_program_and_stop_only_at_the_missing_docker_provider(cli: PulumiCli):
    cli.run("config", "set", "cacheMaxSize", "50GB")
    cli.run("config", "set", "cacheMinAge", "1h30m")
    cli.run("config", "set", "--path", "cachePin[0]", "library/alpine:3.20")
    result = cli.run("preview", "--non-interactive", check=False)
    output = result.stdout + result.stderr
    assert "invalid stack configuration" not in output
    # the program ran to its first resource: what stops it is the provider the proxy refuses
    assert "pulumi-resource-docker" in output, output[-3000:]
