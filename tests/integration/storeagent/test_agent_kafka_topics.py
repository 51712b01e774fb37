import time

from storeagent.testing import stock_event


def test_loop_waits_for_topics_created_after_it_started(agent_loop, make_wire_topics, publish):
    runner = agent_loop()
    replica = runner.start()
    time.sleep(0.5)
    assert not replica.is_bootstrapped()

    make_wire_topics()
    publish.send(stock_event(sku="LATE-1", quantity=4, stock_version=1))

    runner.wait_applied(publish.ends, timeout=30)
    assert replica.m.stock.get_by_id("LATE-1").quantity == 4
    runner.stop()
