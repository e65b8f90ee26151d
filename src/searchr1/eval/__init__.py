"""searchr1.eval"""
