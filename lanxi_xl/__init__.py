"""lanxi-xl: the Lanxi e-commerce award policy (兰政办发〔2022〕3号) as data, rules and workbooks."""

__version__ = "0.1.0"
