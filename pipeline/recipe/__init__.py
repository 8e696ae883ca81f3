"""Recipes that choose themselves: the auto recipe's plan, throughput measurements and portfolio."""
