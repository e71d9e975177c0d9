"""A stand-in for TensorFlow Serving in tests: its real gRPC and REST protocols over real SavedModels.

    from tests.support.tfserving_standin import StandIn
    with StandIn(model_base_path=base, model_name="mnist", versions=[1, 2]) as serving:
        channel = grpc.insecure_channel(serving.grpc_target)   # PredictionService, ModelService
        requests.get(f"{serving.rest_url}/v1/models/mnist")    # REST API, /monitoring/prometheus/metrics
        serving.set_fault("slow", delay=2.0); serving.set_fault("error"); serving.set_fault("down")
        serving.resume()

Also a process: `python -m tests.support.tfserving_standin --port 8500 --rest_api_port 8501 ...` with
tensorflow_model_server's flag names. docs/TESTING.md says what is faithful and what is not.
"""

from .errors import ServingError
from .server import StandIn

__all__ = ["ServingError", "StandIn"]
