import XCTest
@testable import FlightboxConfig
