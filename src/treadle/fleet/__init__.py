"""The fleet: the autoscaler (pure decision), its control loop, and replica launchers (local, Ray)."""
