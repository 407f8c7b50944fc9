"""Phase 2 artifacts: pure renderers (data in, text out) and the writer that saves them."""

from agent.artifacts.config_template import render_config_template
from agent.artifacts.decision_log import render_decision_entry, update_decision_log
from agent.artifacts.phase_spec import render_phase_spec
from agent.artifacts.project_spec import update_project_spec
from agent.artifacts.skip_record import render_skip_project_spec_section, render_skip_record
from agent.artifacts.writer import write_phase_artifacts, write_skip_artifacts

__all__ = [
    "render_config_template",
    "render_decision_entry",
    "render_phase_spec",
    "render_skip_project_spec_section",
    "render_skip_record",
    "update_decision_log",
    "update_project_spec",
    "write_phase_artifacts",
    "write_skip_artifacts",
]
