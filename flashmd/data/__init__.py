"""flashmd.data"""
