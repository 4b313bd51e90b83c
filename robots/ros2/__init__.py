"""The ROS 2 bridge: message types (`messages`) and the DDS transport (`transport`) that speaks ROS 2's wire format.

Both need the ``ros2`` extra (``pip install -e ".[ros2]"``); importing this package alone imports nothing heavy.
"""
