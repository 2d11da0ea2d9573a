"""Stand-ins for services that cannot run here, speaking their real protocols on loopback."""
