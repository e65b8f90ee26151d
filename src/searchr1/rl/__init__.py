"""searchr1.rl"""
