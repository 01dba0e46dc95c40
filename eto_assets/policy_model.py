"""An MLflow pyfunc wrapper around a policy checkpoint, so every registered version of
``eto-<task>`` can be loaded with ``mlflow.pyfunc.load_model`` and asked for the agent's next turn."""

from __future__ import annotations

import mlflow.pyfunc


class PolicyModel(mlflow.pyfunc.PythonModel):
    """Input: a list of chat conversations (or a DataFrame with a ``messages`` column).
    Output: the agent's next message for each, greedy."""

    def load_context(self, context) -> None:
        from eto_assets.agent.backends import TransformersBackend

        self._backend = TransformersBackend(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):  # untyped: MLflow infers schemas from hints
        from eto_assets.agent.backends import GenerationConfig

        if hasattr(model_input, "to_dict"):
            conversations = list(model_input["messages"])
        else:
            conversations = list(model_input)
        params = params or {}
        config = GenerationConfig(max_new_tokens=int(params.get("max_new_tokens", 128)))
        return [a or "" for a in self._backend.generate(conversations, config)]
