"""The rules' JSON Schema (for forms) and its command line: export, --help and --check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import recommender_client.rerank as rerank
from recommender_client.rerank.schema import main, rules_json_schema

KINDS = {
    "blacklist": "Blacklist",
    "boost": "Boost",
    "bury": "Bury",
    "category_diversity": "CategoryDiversity",
    "exploration": "Exploration",
    "filter_seen": "FilterSeen",
    "filter_unpublished": "FilterUnpublished",
    "frequency_cap": "FrequencyCap",
    "freshness": "Freshness",
    "pin": "Pin",
}


def test_schema_is_a_union_on_the_rule_kind_with_the_checks_of_each_field() -> None:
    schema = rules_json_schema()
    union = schema["properties"]["rules"]["items"]
    assert union["discriminator"] == {
        "propertyName": "type",
        "mapping": {kind: f"#/$defs/{model}" for kind, model in KINDS.items()},
    }
    defs = schema["$defs"]
    assert all(
        defs[m]["additionalProperties"] is False and defs[m]["properties"]["type"]["const"] == k
        for k, m in KINDS.items()
    )
    assert defs["Blacklist"]["properties"]["categories"]["items"] == {"type": "string", "minLength": 1}
    bury = defs["Bury"]["properties"]["multiplier"]
    assert (bury["exclusiveMinimum"], bury["exclusiveMaximum"]) == (0, 1)
    assert defs["Boost"]["properties"]["multiplier"]["exclusiveMinimum"] == 1
    slots = defs["Exploration"]["properties"]["slots"]
    assert slots["minItems"] == 1 and slots["uniqueItems"] is True and slots["items"]["minimum"] == 0
    assert {"type": "string", "format": "date-time"} in defs["Pin"]["properties"]["start"]["anyOf"]
    assert defs["Pin"]["required"] == ["name", "type", "item", "position"]
    assert defs["FrequencyCap"]["properties"]["max_impressions"] == {
        "minimum": 1,
        "title": "Max Impressions",
        "type": "integer",
    }


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recommender_client.rerank.schema", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_command_line_exports_the_schema_and_checks_files(tmp_path: Path) -> None:
    out = run("--json-schema")
    assert out.returncode == 0 and json.loads(out.stdout) == rules_json_schema()
    helped = run("--help")
    assert helped.returncode == 0 and "--json-schema" in helped.stdout and "--check" in helped.stdout
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {name: ban, type: blacklist, categories: ['']}\n")
    assert main(["--check", str(bad)]) == 1
    checked = run("--check", str(bad))
    assert checked.returncode == 1 and "(at rules[0].categories[0])" in checked.stderr
    shipped = Path(rerank.__file__).parent / "default_rules.yaml"
    assert main(["--check", str(shipped)]) == 0
    assert run().returncode == 2  # an action is required
