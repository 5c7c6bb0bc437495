@_exported import WarrenCore
@_exported import WarrenEngine
@_exported import WarrenGossip
@_exported import WarrenGRPC
@_exported import WarrenGRPCClient
