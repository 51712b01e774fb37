"""Sales at the store: the order rules and offline policy (pure), the order desk the tills
call, and the replayer that settles sales with central later."""
