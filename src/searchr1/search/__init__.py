"""searchr1.search"""
