"""The main job: train the example model on an embedded Dask cluster, serve it, call it.

``python -m caikit_dask.demo`` (or ``caikit-dask-demo``) shows the whole path a
newcomer cares about, with nothing to configure: a LocalCluster of worker
processes, a training submitted as a Dask task with a resource annotation, the
trained model loaded into actors, and calls answered by those actors.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import dask
from caikit.core.modules import ModuleConfig

from caikit_dask import DaskModelInitializer, DaskModelTrainer
from caikit_dask.cluster_state import workers
from caikit_dask.connection import DaskConnection
from caikit_dask.example import TextClassifier

SAMPLES = [
    "The staff were friendly and the food was wonderful.",
    "Terrible service, cold food and a long wait.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes to start")
    parser.add_argument("--replicas", type=int, default=2, help="actors serving the model")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)

    connection = {
        "local": {"n_workers": args.workers, "resources": {"GPU": 1}},
        "use_current_client": False,
    }
    trainer = DaskModelTrainer({"connection": connection}, "demo")
    initializer = DaskModelInitializer(
        {"connection": connection, "replicas": args.replicas}, "demo"
    )
    try:
        client = trainer.backend.client
        print(
            f"Dask cluster: {len(workers(client))} worker processes at {client.scheduler.address}"
        )
        print(f"Dashboard:    {client.dashboard_link}")

        with tempfile.TemporaryDirectory(prefix="caikit-dask-demo-") as out:
            started = time.perf_counter()
            with dask.annotate(resources={"GPU": 1}):
                future = trainer.train(
                    TextClassifier, epochs=args.epochs, save_path=out, model_name="sentiment"
                )
            returned = time.perf_counter() - started
            print(
                f"\nTraining {future.id}: submitted in {returned * 1000:.1f} ms "
                f"(status {future.get_info().status.name})"
            )
            future.wait()
            info = future.get_info()
            print(
                f"Training {info.status.name} on worker {future.training.worker} "
                f"in {time.perf_counter() - started:.2f} s; saved to {future.save_path}"
            )

            model = initializer.init(ModuleConfig.load(future.save_path))
            print(
                f"\nLoaded into {len(model.replicas)} actor(s): "
                f"{', '.join(r['worker'] for r in model.replicas)}"
            )
            for text in SAMPLES:
                result = model.run(text)
                print(f"  {result.label:>8} ({result.score:.2f})  {text}")
            print("Streaming, one result per sentence:")
            for item in model.run_stream(" ".join(SAMPLES)):
                print(f"  [{item.index}] {item.label:>8} ({item.score:.2f})  {item.text}")
            model.close()
        print("\nDone: the model was trained and served by Dask workers.")
        return 0
    finally:
        DaskConnection.close_all()


if __name__ == "__main__":
    raise SystemExit(main())
