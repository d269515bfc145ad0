"""AI backends behind one interface: DashScope through its SDK, or Function Compute."""
