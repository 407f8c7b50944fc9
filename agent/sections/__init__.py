"""The six decision sections, in the seed's order."""

from agent.sections import base_model, hyperparameters, infrastructure, peft, training_approach, training_data
from agent.sections.base import SectionSpec

SECTION_SPECS: dict[str, SectionSpec] = {
    spec.name: spec
    for spec in (
        base_model.SPEC,
        training_approach.SPEC,
        training_data.SPEC,
        peft.SPEC,
        hyperparameters.SPEC,
        infrastructure.SPEC,
    )
}
