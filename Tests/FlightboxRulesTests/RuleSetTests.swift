import XCTest
@testable import FlightboxRules

final class RuleSetTests: XCTestCase {
    func testBuiltInRulesCompile() {
        XCTAssertGreaterThan(RuleSet.builtIn().rules.count, 10)
    }
}
