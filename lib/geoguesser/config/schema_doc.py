"""The settings schema as Markdown: every section's settings with default and meaning."""

from __future__ import annotations

from pathlib import Path

import yaml

from geoguesser.config.sections import Section, Settings


def schema_markdown() -> str:
    """The settings as Markdown tables, one per section: what the docs' settings page shows."""
    lines = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            lines += [f"`{section}`: {field.description}", ""]
            continue
        lines += [f"**{section}**", "", "| setting | default | meaning |", "|---|---|---|"]
        for name, sub in model.model_fields.items():
            default = sub.get_default(call_default_factory=True)
            if isinstance(default, Path):
                default = str(default)
            elif isinstance(default, list | tuple):
                default = [str(v) if isinstance(v, Path) else v for v in default]
            shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...")
            lines.append(f"| `{name}` | `{shown.strip()}` | {sub.description} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
