from harness.waiting import eventually
from storeagent.replica.queries import ReplicaReads
from tests.support.agent_fakes import stock_event


def test_loop_waits_for_topics_created_after_it_started(
    agent_loop, make_wire_topics, publish, caplog
):
    runner = agent_loop()
    replica = runner.start()
    eventually(lambda: "consumer.waiting_for_topics" in caplog.messages, 20, "waiting logged")
    assert not replica.is_bootstrapped()

    make_wire_topics()
    publish.send(stock_event(sku="LATE-1", quantity=4, stock_version=1))

    runner.wait_applied(publish.ends, timeout=30)
    assert ReplicaReads(replica).stock_level("LATE-1").quantity == 4
    runner.stop()
