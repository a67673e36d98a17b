"""What trainings leave on the scheduler once the connection that followed them closes."""

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier
from caikit_dask.training import events


def _subscribers(observer, topics):
    def read(dask_scheduler):
        broker = dask_scheduler._broker
        return {topic: sorted(broker._topics[topic].subscribers) for topic in topics}

    return observer.run_on_scheduler(read)


def test_closing_the_connection_ends_the_training_subscriptions(local_cluster, observer):
    # A timeout of its own: a connection shared with no other test, closed here.
    trainer = DaskModelTrainer(
        {"connection": {"address": local_cluster.scheduler_address, "timeout": "19s"}},
        "cleanup",
    )
    future = trainer.train(TextClassifier, epochs=1)
    future.wait()
    client = trainer.backend.client
    topics = events.SUBSCRIBED_TOPICS
    assert all(client.id in ids for ids in _subscribers(observer, topics).values())
    trainer.backend.connection.close()
    assert client.status == "closed"
    assert not any(client.id in ids for ids in _subscribers(observer, topics).values())
