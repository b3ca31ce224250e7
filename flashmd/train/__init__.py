"""flashmd.train"""
