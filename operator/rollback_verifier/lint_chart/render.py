"""Turning a chart folder into a `ChartSnapshot`, with real helm.

Templates are rendered by `helm template` *without* `--include-crds`: the CRDs of the `crds/`
folder are read from the files instead, so the rules can tell them apart from CRDs that live in
`templates/` (those are rendered, and belong to the release).
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from rollback_verifier.lint_chart import gating
from rollback_verifier.lint_chart.model import (
    CRD_KIND,
    ChartSnapshot,
    CrdDoc,
    FlagSetting,
    InputError,
    Resource,
    ResourceKey,
    resource_from_manifest,
)

HELM_TIMEOUT_SECONDS = 120
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class RenderError(InputError):
    """helm could not render the chart; the message carries helm's own error."""


@dataclass(frozen=True)
class RenderOptions:
    helm: str
    release: str = "release-name"
    namespace: str = "default"
    values_files: tuple[Path, ...] = ()
    kube_version: str | None = None
    api_versions: tuple[str, ...] = ()


def _one_line(text: str) -> str:
    """helm's error, as one line: its `Error:` lines (else its last line), whitespace folded."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    picked = errors or lines[-1:]
    joined = " | ".join(picked) or "(no output)"
    return " ".join(joined.split())


def _load_yaml_file(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None


def check_values_files(files: Sequence[Path]) -> None:
    for path in files:
        if not path.is_file():
            raise InputError(f"values file {path} does not exist")


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """helm's coalescing of values files, for maps: later files win, maps merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def user_values(files: Sequence[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in files:
        document = _load_yaml_file(path, "values file")
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise InputError(f"values file {path} is not a map of values")
        merged = merge_values(merged, document)
    return merged


@contextmanager
def chart_folder(path: Path) -> Iterator[Path]:
    """The chart as a folder: a folder as it is, a packaged `.tgz` unpacked into a temporary one."""
    if path.is_dir():
        if not (path / "Chart.yaml").is_file():
            raise InputError(f"{path} is not a helm chart (no Chart.yaml)")
        yield path
        return
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        with tempfile.TemporaryDirectory(prefix="lint-chart-") as tmp:
            try:
                with tarfile.open(path) as archive:
                    archive.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise InputError(f"cannot unpack chart archive {path}: {exc}") from None
            charts = sorted(p.parent for p in Path(tmp).glob("*/Chart.yaml"))
            if len(charts) != 1:
                raise InputError(f"{path} is not a packaged helm chart (no single <name>/Chart.yaml)")
            yield charts[0]
        return
    if not path.exists():
        raise InputError(f"chart {path} does not exist")
    raise InputError(f"{path} is not a helm chart (not a folder with a Chart.yaml, nor a .tgz)")


def helm_template(chart: Path, options: RenderOptions, extra_values: Sequence[Path] = ()) -> str:
    command = [
        options.helm,
        "template",
        options.release,
        str(chart),
        "--namespace",
        options.namespace,
        "--skip-tests",
    ]
    if options.kube_version:
        command += ["--kube-version", options.kube_version]
    for api_version in options.api_versions:
        command += ["--api-versions", api_version]
    for values_file in (*options.values_files, *extra_values):
        command += ["--values", str(values_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"helm template {chart} did not finish in {HELM_TIMEOUT_SECONDS}s") from None
    except OSError as exc:
        raise InputError(f"cannot run helm ({options.helm}): {exc}") from None
    if done.returncode != 0:
        raise RenderError(f"helm cannot render {chart}: {_one_line(done.stderr or done.stdout)}")
    return done.stdout


def split_rendered(output: str) -> list[tuple[str | None, str]]:
    """`helm template` output -> (source, text) per document; source from its `# Source:` line."""
    documents: list[tuple[str | None, str]] = []
    current: list[str] = []

    def flush() -> None:
        text = "\n".join(current)
        if text.strip():
            source = None
            for line in current:
                if line.startswith("# Source: "):
                    source = line[len("# Source: ") :].strip()
                    break
            documents.append((source, text))
        current.clear()

    for line in output.splitlines():
        if line.rstrip() == "---" or line.startswith("--- "):
            flush()
        else:
            current.append(line)
    flush()
    return documents


def parse_rendered(output: str, *, release_namespace: str, chart: Path) -> tuple[Resource, ...]:
    resources: dict[ResourceKey, Resource] = {}
    for source, text in split_rendered(output):
        try:
            parsed = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            where = source or "the rendered output"
            raise RenderError(
                f"helm rendered invalid YAML for {chart} ({where}): {' '.join(str(exc).split())}"
            ) from None
        for doc in parsed:
            items = doc.get("items") if isinstance(doc, Mapping) and doc.get("kind") == "List" else [doc]
            for item in items or []:
                resource = resource_from_manifest(item, source=source, release_namespace=release_namespace)
                if resource is not None:
                    resources[resource.key] = resource
    return tuple(resources.values())


def _template_path(chart: Path, source: str) -> Path | None:
    """`mychart/templates/x.yaml` -> <chart>/templates/x.yaml (subcharts: <chart>/charts/sub/...)."""
    _, _, inside = source.partition("/")
    if not inside:
        return None
    path = chart / inside
    return path if path.is_file() else None


def read_templates(chart: Path, resources: Sequence[Resource]) -> dict[str, str]:
    templates: dict[str, str] = {}
    for source in sorted({res.source for res in resources if res.source}):
        path = _template_path(chart, source)
        if path is None:
            continue
        try:
            templates[source] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return templates


def read_crds(chart: Path) -> tuple[CrdDoc, ...]:
    """The CRDs of the chart's `crds/` folder, and of its unpacked subcharts' `crds/` folders."""
    folders = [chart / "crds", *sorted(p / "crds" for p in (chart / "charts").glob("*") if p.is_dir())]
    crds: dict[str, CrdDoc] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _MANIFEST_SUFFIXES):
            try:
                documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
                raise InputError(f"CRD file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
            for doc in documents:
                if not isinstance(doc, Mapping) or doc.get("kind") != CRD_KIND:
                    continue
                name = str((doc.get("metadata") or {}).get("name") or "")
                if name:
                    crds[name] = CrdDoc(name, "crds", doc, str(path.relative_to(chart)))
    return tuple(crds.values())


def chart_defaults(chart: Path) -> dict[str, Any]:
    path = chart / "values.yaml"
    if not path.is_file():
        return {}
    document = _load_yaml_file(path, "chart values")
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise InputError(f"{path} is not a map of values")
    return dict(document)


def load_snapshot(chart: Path, options: RenderOptions) -> ChartSnapshot:
    """Render `chart` (a folder with a Chart.yaml) with the given values files."""
    output = helm_template(chart, options)
    resources = parse_rendered(output, release_namespace=options.namespace, chart=chart)
    default_keys: frozenset[ResourceKey] | None = None
    if options.values_files:
        try:
            defaults_only = replace(options, values_files=())
            rendered = parse_rendered(
                helm_template(chart, defaults_only), release_namespace=options.namespace, chart=chart
            )
            default_keys = frozenset(res.key for res in rendered)
        except RenderError:
            default_keys = None  # the chart needs values to render at all: cannot tell, assume default-on
    return ChartSnapshot(
        resources=resources,
        crds=read_crds(chart),
        values=chart_defaults(chart),
        user_values=user_values(options.values_files),
        templates=read_templates(chart, resources),
        default_keys=default_keys,
    )


def add_flag_renders(
    snapshot: ChartSnapshot, chart: Path, options: RenderOptions, checks: set[tuple[FlagSetting, ...]]
) -> ChartSnapshot:
    """Render the chart once per flag setting (an extra values file, last) and record what remains."""
    if not checks:
        return snapshot
    renders: dict[tuple[FlagSetting, ...], frozenset[ResourceKey]] = dict(snapshot.flag_renders)
    with tempfile.TemporaryDirectory(prefix="lint-chart-flags-") as tmp:
        for index, settings in enumerate(sorted(checks)):
            values_file = Path(tmp) / f"flags-{index}.yaml"
            values_file.write_text(yaml.safe_dump(gating.settings_to_values(settings)), encoding="utf-8")
            try:
                output = helm_template(chart, options, extra_values=[values_file])
            except RenderError:
                continue  # switching the flag off breaks the chart: no evidence either way
            rendered = parse_rendered(output, release_namespace=options.namespace, chart=chart)
            renders[settings] = frozenset(res.key for res in rendered)
    return replace(snapshot, flag_renders=renders)
